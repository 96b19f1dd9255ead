"""The FastAPI application factory: routers, static files, middleware. No logic here."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.auth import LoginThrottle
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.queue import make_celery
from app.resources import STATIC_DIR
from app.web.deps import CsrfFailed, Forbidden, LoginRequired, PasswordChangeRequired
from app.web.input_guard import ID_RANGE_ERRORS, InputGuardMiddleware
from app.web.middleware import BodySizeLimitMiddleware, HeadAsGetMiddleware, SecurityHeadersMiddleware
from app.web.routes import routers
from app.web.templating import is_htmx, render

SESSION_COOKIE = "rlhf_session"
logger = logging.getLogger("rlhf.web")


def _wants_html(request: Request) -> bool:
    """Pages answer errors with pages; the JSON API (and clients asking for JSON) with JSON."""
    if request.url.path.startswith("/api/"):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or is_htmx(request) or "application/json" not in accept


def _error(request: Request, status: int, title: str, message: object) -> Response:
    """An error page for browsers, JSON for API clients."""
    if _wants_html(request):
        context = {"title": title, "message": message}
        return render(request, "error.html", context, status_code=status)
    return JSONResponse({"detail": message}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        target = "/login?next=" + quote(request.url.path)
        if is_htmx(request):
            # Back to the page the request came from (an expired session mid-task), not to the
            # action it posted to; /login keeps only local targets.
            page = urlsplit(request.headers.get("HX-Current-URL", "")).path or request.url.path
            return Response(status_code=401, headers={"HX-Redirect": "/login?next=" + quote(page)})
        if _wants_html(request):
            return RedirectResponse(target, status_code=303)
        return JSONResponse({"detail": "Not logged in."}, status_code=401)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, _exc: PasswordChangeRequired) -> Response:
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": "/account/password"})
        if _wants_html(request):
            return RedirectResponse("/account/password", status_code=303)
        return JSONResponse({"detail": "Choose a new password first."}, status_code=403)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if _wants_html(request):
            return render(
                request,
                "error.html",
                {"title": "Not allowed", "message": str(exc)},
                status_code=403,
            )
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, _exc: CsrfFailed) -> Response:
        message = "The form was stale or did not come from this site. Reload the page and try again."
        if _wants_html(request):
            return render(
                request,
                "error.html",
                {"title": "Form expired", "message": message},
                status_code=403,
            )
        return JSONResponse({"detail": message}, status_code=403)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request) and exc.status_code >= 400:
            titles = {404: "Not found", 405: "Not allowed", 413: "Too large"}
            return render(
                request,
                "error.html",
                {"title": titles.get(exc.status_code, "Error"), "message": exc.detail},
                status_code=exc.status_code,
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> Response:
        # The database went away (a restart, a failover, a lock timeout): the transaction was
        # rolled back, nothing of the request was stored, and trying again shortly is right.
        logger.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc.orig)
        message = "The database is not reachable right now, so nothing was saved. Try again in a few seconds."
        headers = {"Retry-After": "5"}
        if _wants_html(request):
            response = render(
                request, "error.html", {"title": "Try again", "message": message}, status_code=503
            )
            response.headers.update(headers)
            return response
        return JSONResponse({"detail": message}, status_code=503, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if any(e["loc"][0] == "path" and e["type"] in ID_RANGE_ERRORS for e in exc.errors()):
            # An id outside the column's range names no row: the same answer as a missing one.
            return await http_error(request, StarletteHTTPException(404, "Not found."))
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        if _wants_html(request):
            message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            return render(
                request,
                "error.html",
                {"title": "Invalid input", "message": message},
                status_code=422,
            )
        return JSONResponse({"detail": problems}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="RLHF Studio",
        summary="Collect human preference labels and turn them into better language models.",
        description=(
            "Every text parameter, in any place, is refused with 422 naming it when it contains a "
            "NUL character or an unpaired surrogate (such text cannot be stored)."
        ),
        version="0.1.0",
        # Swagger UI and ReDoc load their scripts from a CDN, which the Content-Security-Policy
        # forbids: the API is described by /openapi.json alone (load it into any OpenAPI viewer).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # No ping per checkout (one more round trip on every request): a request whose connection
    # died (a database restart) is answered 503 "try again" with nothing stored, and the pool
    # drops the other stale connections; the rating path retries it once instead
    # (app/web/rater_request.py).
    app.state.engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, pre_ping=False)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.readonly_sessionmaker = make_sessionmaker(app.state.engine, read_only=True)
    app.state.login_throttle = LoginThrottle(settings.login_rate_limit, user_limit=settings.login_user_limit)
    app.state.celery = make_celery(settings)  # a client only: connects when a task is sent

    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    # Last added runs first: security headers, size limit, the session cookie, then the input
    # guard (inside the size limit, which bounds the body it reads).
    app.add_middleware(InputGuardMiddleware)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=bool(settings.https_only),
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes + 1024 * 1024,  # room for the form around the file
        stated_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(HeadAsGetMiddleware)
    # Every answer carries the security headers, the size limit's 413 included.
    app.add_middleware(SecurityHeadersMiddleware, hsts=bool(settings.https_only))
    if settings.forwarded_allow_ips:
        # Outermost: the client address and scheme come from the forwarding headers, but only
        # when the connection comes from a proxy named in FORWARDED_ALLOW_IPS.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    _install_error_handlers(app)
    return app
