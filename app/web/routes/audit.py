"""The audit log page for admins: every recorded action, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.services import audit
from app.web.deps import AdminUser, SessionDep
from app.web.templating import render

router = APIRouter(prefix="/admin/audit", tags=["audit"])

PAGE_SIZE = 50


def _date(value: str | None) -> datetime | None:
    """A day (YYYY-MM-DD) or a time from the filter form, in UTC; None when empty or not a date."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("", include_in_schema=False)
def audit_page(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    actor: Annotated[str, Query(max_length=100)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    project: Annotated[str, Query(max_length=63)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    filters = audit.Filters(
        actor=actor.strip() or None,
        action=action.strip() or None,
        project=project.strip() or None,
        since=_date(since.strip()),
        until=_date(until.strip()),
    )
    found = audit.events(session, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    total = audit.count(session, filters)
    context = {
        "events": found,
        "slugs": audit.project_slugs(session, found),
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "query": {"actor": actor, "action": action, "project": project, "since": since, "until": until},
    }
    return render(request, "admin/audit.html", context)
