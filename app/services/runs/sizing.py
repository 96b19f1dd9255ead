"""How big a run is before it starts and what its figures are worth after: the defaults for the
worker that will train it, an estimate of its duration (the kind's work on the project's data
size, at the worker's measured speed or a built-in prior), warnings when it is long or its data
too small to mean anything, and the words for where a running run is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app.models import Judgment, Project, Run, RunItem, RunKind, RunPhase, RunStatus, Worker
from app.run_kinds import CPU, Selects, device_defaults, spec
from app.services.runs.records import RunError, add_log
from app.services.runs.snapshots import select_snapshot
from app.services.workers import device_class

# An estimate above this is called long before launch.
LONG_RUN_S = 30 * 60
# Held-out sets (and evaluations) smaller than this give accuracies too uncertain to read.
MIN_HELD_OUT = 20


@dataclass
class Estimate:
    kind: RunKind
    device: str  # the worker's device, or "cpu" when no worker is live
    hostname: str | None
    data_size: int | None  # the project's items for this run (pairs, demonstrations, prompts...)
    units: float | None
    unit: str
    seconds: float | None
    measured: bool  # the worker's own speed; else the built-in prior for its device class
    warnings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        if self.measured:
            return f"measured on {self.hostname}"
        return f"rough prior for a small model on {device_class(self.device).upper()}, nothing measured yet"


def launch_defaults(kind: RunKind, worker: Worker | None) -> dict[str, Any]:
    """Config values that replace the schema's defaults for the worker a run is sized for."""
    return device_defaults(kind, device_class(worker.device) if worker is not None else CPU)


def data_size(session: Session, kind: RunKind, project: Project, config: Mapping[str, Any]) -> int:
    """The items a run would get now: the snapshot's size, in pairs for preference kinds (one
    per judged comparison when votes are aggregated). Raises RunError as creating it would."""
    snapshot = select_snapshot(session, spec(kind).selects, project, dict(config))
    return _items(session, kind, config, snapshot.ids)


def _items(session: Session, kind: RunKind, config: Mapping[str, Any], ids: list[int]) -> int:
    if spec(kind).selects != Selects.judgments or config.get("aggregation") != "majority" or not ids:
        return len(ids)
    count = 0
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        count += (
            session.scalar(select(func.count(distinct(Judgment.comparison_id))).where(Judgment.id.in_(chunk)))
            or 0
        )
    return count


def estimate(
    session: Session, *, kind: RunKind, project: Project, config: Mapping[str, Any], worker: Worker | None
) -> Estimate:
    """The duration of a run of `kind` with the resolved `config` on `worker` (None: CPU, priors),
    and what to warn about before launching it."""
    sizing = spec(kind).sizing
    device = worker.device if worker is not None else CPU
    result = Estimate(kind=kind, device=device, hostname=worker.hostname if worker else None,
                      data_size=None, units=None, unit=sizing.unit, seconds=None, measured=False)  # fmt: skip
    try:
        result.data_size = data_size(session, kind, project, config)
    except RunError as error:
        result.warnings.append(f"{error}.")
        return result
    result.units = sizing.work(config, result.data_size)
    speed = (worker.speeds or {}).get(kind.value) if worker is not None else None
    if speed:
        overhead, per_unit = float(speed["overhead_s"]), float(speed["s_per_unit"])
        result.measured = True
    else:
        overhead, per_unit = sizing.prior[device_class(device)]
    result.seconds = overhead + result.units * per_unit
    if result.seconds > LONG_RUN_S:
        smaller = ", ".join(sorted(sizing.cpu_defaults)) or "the settings"
        result.warnings.append(
            f"This run would take about {duration(result.seconds)} on {device} ({result.source}). "
            f"Lower {smaller} to finish sooner."
        )
    result.warnings += data_warnings(kind, config, result.data_size)
    return result


def _plus_minus(n: int) -> float:
    """Half the width of a 95% interval of an accuracy near 1/2 measured on n pairs."""
    return min(1.0, 1.96 * math.sqrt(0.25 / max(n, 1)))


def data_warnings(kind: RunKind, config: Mapping[str, Any], n: int) -> list[str]:
    """Before launch: too little data for the run's figures to mean anything."""
    sizing = spec(kind).sizing
    warnings = []
    if n < sizing.min_data:
        warnings.append(
            f"Only {n} {sizing.data}: below {sizing.min_data}, the run learns little and its "
            "figures mean little."
        )
    if "eval_fraction" in config and sizing.data == "pairs":
        held = round(n * float(config["eval_fraction"]))
        if held == 0:
            warnings.append("No pair is held out: no held-out accuracy will be measured.")
        elif held < MIN_HELD_OUT:
            warnings.append(
                f"About {held} held-out pair{'s' if held != 1 else ''}: an accuracy on {held} is "
                f"± {_plus_minus(held):.0%}, too few to mean anything."
            )
    return warnings


def run_cautions(session: Session, run: Run) -> list[str]:
    """Beside a run's figures: what they were measured on, when that is too little."""
    cautions = []
    summary = run.summary or {}
    counted = summary.get("eval/pairs", summary.get("n"))
    for key in ("eval/accuracy", "accuracy", "win_rate"):
        value = summary.get(key)
        if isinstance(value, int | float) and isinstance(counted, int | float) and counted < MIN_HELD_OUT:
            n = int(counted)
            cautions.append(
                f"{key} {value:.3g} on {n} held-out pair{'s' if n != 1 else ''}: too few to mean "
                f"anything (± {_plus_minus(n):.0%})."
            )
    sizing = spec(run.kind).sizing
    if not cautions and sizing.min_data and run.snapshot_size < 10 * sizing.min_data:
        n = run.snapshot_size
        if spec(run.kind).selects == Selects.judgments:
            ids = list(session.scalars(select(RunItem.item_id).where(RunItem.run_id == run.id)))
            n = _items(session, run.kind, run.config, ids)
        if n < sizing.min_data:
            cautions.append(
                f"Only {n} {sizing.data} in its snapshot: below {sizing.min_data}, these figures mean little."
            )
    return cautions


def duration(seconds: float) -> str:
    """ "45 s", "12 min", "2 h 10 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def current_phase(run: Run) -> str | None:
    """A running run's phase outside its steps ("loading the model", "preparing data", "saving
    the model"); None when it is training (then its step tells where it is) or not running."""
    if run.status == RunStatus.running and run.phase and run.phase != RunPhase.training:
        return run.phase
    return None


def log_estimate(session: Session, run: Run, found: Estimate) -> None:
    """The launch's estimate and warnings, as the run's log lines."""
    if found.seconds is not None:
        add_log(session, run.id, f"estimate: about {duration(found.seconds)} on {found.device} "
                                 f"({found.source})")  # fmt: skip
    for warning in found.warnings:
        add_log(session, run.id, f"warning: {warning}", level="warning")
