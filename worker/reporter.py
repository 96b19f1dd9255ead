"""The trainers' Reporter, backed by the database: metrics, phases, heartbeat (the run's and the
worker's), logs, cancellation; and the timings the runner turns into the worker's speed."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.services import workers
from app.services.runs.lifecycle import record_progress, set_phase
from app.services.runs.records import add_log

# The worker's row is touched at most this often with the run's heartbeat.
TOUCH_WORKER_S = 30.0


class DbReporter:
    """Writes metrics at most every `flush_s` seconds (always the latest step), and reads the
    run's cancel flag at each flush, so a cancel takes effect within about `flush_s`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        run_id: int,
        *,
        flush_s: float = 1.0,
        on_step: Callable[[int, int, dict[str, float]], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.factory = factory
        self.on_step = on_step
        self.on_log = on_log
        self.on_phase = on_phase
        self.hostname = hostname  # the worker's row to keep live while the run trains
        self.phases: list[str] = []
        # (monotonic time, step) of the first and the latest reported step: the runner's timings
        self.first_step: tuple[float, int] | None = None
        self.last_step: tuple[float, int] | None = None
        self._last_touch = 0.0
        self.run_id = run_id
        self.flush_s = flush_s
        self._pending: list[tuple[int, int, dict[str, float]]] = []
        self._last_flush = 0.0
        self._stop = False

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (now, step)
        self.last_step = (now, step)
        self._pending.append((step, total, dict(metrics)))
        if self.on_step is not None:
            self.on_step(step, total, metrics)
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        with session_scope(self.factory) as session:
            for step, total, metrics in pending:
                if record_progress(session, run_id=self.run_id, step=step, total=total, metrics=metrics):
                    self._stop = True
            if self.hostname and time.monotonic() - self._last_touch >= TOUCH_WORKER_S:
                workers.touch(session, hostname=self.hostname)
                self._last_touch = time.monotonic()
        self._last_flush = time.monotonic()

    def phase(self, name: str) -> None:
        """What the run does now (a RunPhase value): stored on the run after the pending steps."""
        self.phases.append(name)
        if self.on_phase is not None:
            self.on_phase(name)
        self.flush()
        with session_scope(self.factory) as session:
            set_phase(session, run_id=self.run_id, phase=name)

    def log(self, message: str) -> None:
        if self.on_log is not None:
            self.on_log(message)
        with session_scope(self.factory) as session:
            add_log(session, self.run_id, message)

    def should_stop(self) -> bool:
        return self._stop
