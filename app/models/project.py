from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class Scale(enum.StrEnum):
    """How finely a rater can say which response is better."""

    five = "five"  # A much better, A better, tie, B better, B much better
    three = "three"  # A better, tie, B better
    two = "two"  # A, B (no tie)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")  # markdown, shown to raters
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # distinct raters per pair
    scale: Mapped[Scale] = mapped_column(enum_column(Scale), default=Scale.five)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rationale_required: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=900)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
