from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import UTCDateTime, enum_column, utcnow


class Role(enum.StrEnum):
    rater = "rater"
    admin = "admin"
    researcher = "researcher"
    # An AI labeler (reward model or prompted LM). It owns AI judgments; it can never log in.
    judge = "judge"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_column(Role))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A paused rater can log in but is given no pairs until an admin resumes them.
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set for accounts created with a one-time password: the first login asks for a new one.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Researchers only: False limits exports, the API and the project list to the projects
    # the researcher is a member of (directly or through a group). Admins always see every project.
    all_projects: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginFailure(Base):
    """A failed login, kept for the throttle's window: shared by every web process."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_key", "username", "client", "at"),
        Index("ix_login_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))  # as typed, lowercased: unknown names too
    client: Mapped[str] = mapped_column(String(64))  # the client address
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebSession(Base):
    """A browser session. The cookie holds a random token; the row's id is the token's SHA-256,
    so the table alone cannot be used to sign in. A session ends when ``ended_at`` is set
    (logout, password change, deactivation, an admin's "sign out everywhere"), when it was idle
    longer than the idle timeout (``last_seen_at``), or at ``expires_at``."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        Index("ix_web_sessions_user_id", "user_id"),
        Index("ix_web_sessions_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
