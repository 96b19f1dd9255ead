"""All routers, in one list for the app factory."""

from app.routes import admin, api, auth, evaluation, export, health, quality, rate, runs

routers = [
    auth.router,
    rate.router,
    admin.router,
    runs.router,
    quality.router,
    evaluation.router,
    export.router,
    api.router,
    health.router,
]
