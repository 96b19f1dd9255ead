"""The Jinja2 environment: the templates/ folder (see app.resources), helpers every page uses."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from app.resources import TEMPLATES_DIR
from app.web.charts import CHARTS
from app.web.render import render_markdown
from app.web.sessions import csrf_token

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals["csrf_token"] = csrf_token
templates.env.filters["markdown"] = render_markdown
templates.env.globals.update(CHARTS)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    context = dict(context or {})
    context.setdefault("user", getattr(request.state, "user", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)
