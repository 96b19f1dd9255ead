"""All routers, in one list for the app factory."""

from app.routes import admin, auth, health, rate, runs

routers = [auth.router, rate.router, admin.router, runs.router, health.router]
