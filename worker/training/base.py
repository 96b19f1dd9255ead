"""What every trainer shares: the model reference it starts from, the reporter it talks to, and
the result it hands back. Trainers receive plain data (lists of dicts) and a `Reporter`; they never
touch the database, Celery or the web app, so they run the same from a task, the CLI or a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ModelRef:
    """Where a model's weights are.

    `uri` is a local directory (or a hub id where the network allows). For a LoRA adapter,
    `is_adapter` is set and `base` is the model the adapter applies to. `gguf_file` names a GGUF
    file inside `uri` (the demo model ships that way).
    """

    uri: str
    is_adapter: bool = False
    base: ModelRef | None = None
    gguf_file: str | None = None


class Reporter(Protocol):
    """How a trainer reports progress and learns that it should stop."""

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        """Called after each optimisation step (or generation batch) with namespaced metrics."""

    def log(self, message: str) -> None:
        """A line for the run's log."""

    def phase(self, name: str) -> None:
        """What the run does now, before or between its steps (an app.models.RunPhase value:
        "loading the model", "preparing data"); the first step means "training"."""

    def should_stop(self) -> bool:
        """True once the run was cancelled: the trainer raises `Cancelled` at its next step."""


class Cancelled(Exception):
    """The run was cancelled; nothing was saved."""


@dataclass
class TrainResult:
    """A finished trainer's output: a complete model directory and its final metrics."""

    output_dir: Path
    is_adapter: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


class PrintReporter:
    """A reporter for scripts and tests: prints, keeps every metric, never stops."""

    def __init__(self, quiet: bool = True) -> None:
        self.quiet = quiet
        self.history: list[tuple[int, dict[str, float]]] = []
        self.lines: list[str] = []
        self.phases: list[str] = []

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.history.append((step, dict(metrics)))
        if not self.quiet:
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            print(f"[{step}/{total}] {shown}")

    def log(self, message: str) -> None:
        self.lines.append(message)
        if not self.quiet:
            print(message)

    def phase(self, name: str) -> None:
        self.phases.append(name)
        if not self.quiet:
            print(f"({name})")

    def should_stop(self) -> bool:
        return False

    def series(self, name: str) -> list[float]:
        return [m[name] for _, m in self.history if name in m]
