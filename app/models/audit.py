from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class AuditEvent(Base):
    """Who did what, when: one row per admin or researcher action (app/services/audit.py).

    Append-only: the code has no path that changes or deletes a row, and on PostgreSQL a trigger
    refuses UPDATE and DELETE. The actor and the project are plain numbers with a name snapshot,
    not foreign keys, so that the record outlives the user or project it names.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_kind: Mapped[str] = mapped_column(String(8))  # web, api, cli
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. user.create
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    address: Mapped[str] = mapped_column(String(64), default="")
