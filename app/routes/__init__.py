"""All routers, in one list for the app factory."""

from app.routes import admin, api, auth, export, health, rate

routers = [auth.router, rate.router, admin.router, health.router, export.router, api.router]
