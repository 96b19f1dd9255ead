"""Liveness for load balancers, and the favicon browsers ask for."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from app.db import ping
from app.web.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def read_health(session: SessionDep) -> dict[str, str]:
    """Liveness and database reachability (for load balancers and `rlhf up`)."""
    ping(session)
    return {"status": "ok"}


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=308)
