"""The web pages and the JSON API, one router per resource,
in one list for the app factory."""

from app.web.routes import (
    api,
    auth,
    evaluation,
    export,
    health,
    projects,
    quality,
    rate,
    runs,
)

routers = [
    auth.router,
    rate.router,
    projects.router,
    runs.router,
    quality.router,
    evaluation.router,
    export.router,
    api.router,
    health.router,
]
