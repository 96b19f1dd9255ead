"""The audit log: who did what and when, for every admin and researcher action.

`record` adds an event on the caller's session, inside the action's own transaction: an action
that rolls back leaves no event, and an event is never written for an action that did not
happen. Events are append-only (no function here changes or deletes one; PostgreSQL refuses it
with a trigger). Details hold names and numbers, never a password or a token's secret.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.models import AuditEvent, Project, User

KINDS = ("web", "api", "cli")


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (web or api), or the operator at the command line."""

    id: int | None
    name: str
    kind: str
    address: str = ""

    @classmethod
    def of(cls, user: User, kind: str, request: Any = None) -> Actor:
        """A signed-in user acting through `kind` ("web" or "api"); the client address from the
        request, when given."""
        client = getattr(request, "client", None)
        return cls(user.id, user.username, kind, client.host if client else "")

    @classmethod
    def cli(cls) -> Actor:
        """The command line: the operating-system user running `rlhf`."""
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in this environment
            name = "unknown"
        return cls(None, f"cli:{name}"[:100], "cli")


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    target: tuple[str, object] | None = None,
    project: Project | None = None,
    **details: Any,
) -> AuditEvent:
    """Add one event to the session (written when the action's transaction commits)."""
    event = AuditEvent(
        actor_id=actor.id,
        actor_name=actor.name,
        actor_kind=actor.kind,
        action=action,
        target_type=target[0] if target else None,
        target_id=str(target[1])[:100] if target else None,
        project_id=project.id if project is not None else None,
        details=details,
        address=actor.address[:64],
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class Filters:
    actor: str | None = None  # a username, exact
    action: str | None = None  # a prefix: "user" matches user.create and user.role
    project: str | None = None  # a project slug
    since: datetime | None = None
    until: datetime | None = None


def _filtered(session: Session, filters: Filters) -> Select[Any] | None:
    query = select(AuditEvent)
    if filters.actor:
        query = query.where(AuditEvent.actor_name == filters.actor)
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.project:
        project_id = session.scalar(select(Project.id).where(Project.slug == filters.project))
        if project_id is None:
            return None
        query = query.where(AuditEvent.project_id == project_id)
    if filters.since:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.at < filters.until)
    return query


def events(session: Session, filters: Filters, *, limit: int = 50, offset: int = 0) -> list[AuditEvent]:
    """The matching events, newest first."""
    query = _filtered(session, filters)
    if query is None:
        return []
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)))


def count(session: Session, filters: Filters) -> int:
    query = _filtered(session, filters)
    if query is None:
        return 0
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def project_slugs(session: Session, found: list[AuditEvent]) -> dict[int, str]:
    """The slugs of the projects the events name (a deleted project: absent)."""
    ids = {e.project_id for e in found if e.project_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(Project.id, Project.slug).where(Project.id.in_(ids)))
    return {project_id: slug for project_id, slug in rows}


def as_dict(event: AuditEvent, slugs: dict[int, str] | None = None) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor_name,
        "actor_id": event.actor_id,
        "kind": event.actor_kind,
        "action": event.action,
        "target": f"{event.target_type}:{event.target_id}" if event.target_type else None,
        "project": (slugs or {}).get(event.project_id) if event.project_id else None,
        "details": event.details,
        "address": event.address,
    }
