"""The workers that train runs: what each host has, when it last reported, how fast it was."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class Worker(Base):
    """One host that runs the `train` queue (or `rlhf train --now`), reported by the worker itself.

    `device` is "cpu" or "cuda:<name>" (or "mps"); `memory_bytes` is one device's memory (the
    machine's RAM on CPU). `speeds` holds, per run kind, what its finished runs measured:
    `{"dpo": {"s_per_unit": 25.0, "overhead_s": 40.0, "unit": "pairs", "runs": 2}}`
    (app/services/workers.py writes and reads it).
    """

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200), unique=True)
    device: Mapped[str] = mapped_column(String(200), default="cpu")
    device_count: Mapped[int] = mapped_column(Integer, default=0)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cpu_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    speeds: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
