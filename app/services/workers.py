"""The workers' rows: each host reports its device and memory when it starts and while it trains
(worker/hardware.py), and records how fast its finished runs went, per run kind. The launch form
and `rlhf train` read them to choose defaults and estimate a run's duration
(app/services/runs/sizing.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import RunKind, Worker
from app.models.types import utcnow
from app.run_kinds import CPU, GPU, spec

# A worker that has not reported for this long is not counted as live (they report every minute).
LIVE_AFTER = timedelta(minutes=3)
# A new measurement's weight against the speed measured so far.
NEW_WEIGHT = 0.5


def device_class(device: str) -> str:
    """ "cpu" for a CPU-only worker, "gpu" for any accelerator ("cuda:…", "mps")."""
    return CPU if device.split(":", 1)[0] == "cpu" else GPU


def report_worker(
    session: Session,
    *,
    hostname: str,
    device: str,
    device_count: int,
    memory_bytes: int | None,
    cpu_count: int | None,
    now: datetime | None = None,
) -> Worker:
    """Create or update a host's row with what it has; its heartbeat is now."""
    now = now or utcnow()
    facts = {"device": device, "device_count": device_count, "memory_bytes": memory_bytes,
             "cpu_count": cpu_count, "heartbeat_at": now}  # fmt: skip
    worker = session.scalar(select(Worker).where(Worker.hostname == hostname))
    if worker is None:
        try:
            with session.begin_nested():
                worker = Worker(hostname=hostname, speeds={}, started_at=now, **facts)
                session.add(worker)
        except IntegrityError:  # another process of the host inserted it first
            worker = session.scalars(select(Worker).where(Worker.hostname == hostname)).one()
    else:
        worker.started_at = now if worker.heartbeat_at < now - LIVE_AFTER else worker.started_at
    for name, value in facts.items():
        setattr(worker, name, value)
    return worker


def touch(session: Session, *, hostname: str, now: datetime | None = None) -> None:
    """The host's heartbeat (while it trains, with the run's)."""
    session.execute(update(Worker).where(Worker.hostname == hostname).values(heartbeat_at=now or utcnow()))


def record_speed(
    session: Session, *, hostname: str, kind: RunKind, units: float, seconds: float, overhead_s: float
) -> dict[str, Any] | None:
    """Record a finished run's speed on this host: `seconds` of steps for `units` of its kind's
    work (app/run_kinds.py, `Sizing`), after `overhead_s` of loading. Averaged with the speeds
    measured before (the newest weighs `NEW_WEIGHT`). Returns the kind's entry."""
    worker = session.scalar(select(Worker).where(Worker.hostname == hostname).with_for_update())
    if worker is None or units <= 0:
        return None
    measured = {"s_per_unit": seconds / units, "overhead_s": max(0.0, overhead_s)}
    speeds = dict(worker.speeds or {})
    before = speeds.get(kind.value)
    if before:
        measured = {k: (1 - NEW_WEIGHT) * float(before[k]) + NEW_WEIGHT * v for k, v in measured.items()}
    entry = measured | {"unit": spec(kind).sizing.unit, "runs": int((before or {}).get("runs", 0)) + 1}
    speeds[kind.value] = entry
    worker.speeds = speeds  # a new dict: JSON columns do not track changes in place
    return entry


def live_workers(session: Session, *, now: datetime | None = None) -> list[Worker]:
    """Workers that reported within `LIVE_AFTER`, the fastest first: GPU before CPU, then more
    devices, then more memory."""
    now = now or utcnow()
    workers = session.scalars(select(Worker).where(Worker.heartbeat_at >= now - LIVE_AFTER)).all()
    return sorted(
        workers,
        key=lambda w: (device_class(w.device) == GPU, w.device_count, w.memory_bytes or 0),
        reverse=True,
    )


def fastest_live(session: Session, *, now: datetime | None = None) -> Worker | None:
    """The worker a new run is sized for; None when no worker is live (then CPU defaults)."""
    workers = live_workers(session, now=now)
    return workers[0] if workers else None


def describe(worker: Worker | None) -> str:
    """ "cuda:NVIDIA H200 ×8, 139 GiB (gpu-1)", or what is assumed when no worker is live."""
    if worker is None:
        return "no live worker (CPU assumed)"
    count = f" ×{worker.device_count}" if worker.device_count > 1 else ""
    memory = f", {worker.memory_bytes / 2**30:.0f} GiB" if worker.memory_bytes else ""
    return f"{worker.device}{count}{memory} ({worker.hostname})"
