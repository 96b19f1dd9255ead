from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class Prompt(Base):
    """A conversation to be answered: a list of ``{"role", "content"}`` messages."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    # sha256 of the canonical JSON of `messages`: the same conversation is stored once.
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Completion(Base):
    """One response to a prompt, with the provenance of the text when known."""

    __tablename__ = "completions"
    __table_args__ = (Index("ix_completions_prompt_hash", "prompt_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Free-form name of the producing model for imported text ("gpt-x", "human")...
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # ...or the registered model version that sampled it.
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL", name="fk_completions_model_version_id"),
        nullable=True,
    )
    sampling: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
