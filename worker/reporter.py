"""The trainers' Reporter, backed by the database: metrics, heartbeat, logs, cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.services.runs.lifecycle import record_progress
from app.services.runs.records import add_log


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
    ) -> None:
        self.factory = factory
        self.on_step = on_step
        self.on_log = on_log
        self.run_id = run_id
        self.flush_s = flush_s
        self._pending: list[tuple[int, int, dict[str, float]]] = []
        self._last_flush = 0.0
        self._stop = False

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
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
        self._last_flush = time.monotonic()

    def log(self, message: str) -> None:
        if self.on_log is not None:
            self.on_log(message)
        with session_scope(self.factory) as session:
            add_log(session, self.run_id, message)

    def should_stop(self) -> bool:
        return self._stop
