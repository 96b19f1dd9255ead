"""All routers, in one list for the app factory."""

from app.routes import admin, api, auth, export, health, rate, runs

routers = [
    auth.router,
    rate.router,
    admin.router,
    runs.router,
    export.router,
    api.router,
    health.router,
]
