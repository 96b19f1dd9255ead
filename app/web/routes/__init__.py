"""The web pages and the JSON API, one router per resource,
in one list for the app factory."""

from app.web.routes import (
    api,
    audit,
    auth,
    evaluation,
    export,
    groups,
    health,
    models,
    projects,
    quality,
    rate,
    runs,
    schedules,
    tokens,
    users,
)

routers = [
    auth.router,
    rate.router,
    projects.router,
    groups.router,
    users.router,
    audit.router,
    runs.router,
    models.router,
    schedules.router,
    quality.router,
    evaluation.router,
    export.router,
    tokens.router,
    api.router,
    health.router,
]
