"""The web wing: the app factory, routes, dependencies, middleware, sessions, templating, charts
and Markdown rendering. The domain (app.services, app.models) never imports from here."""
