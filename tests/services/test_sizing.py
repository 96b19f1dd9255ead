"""Sizing a run before launch: defaults for the fastest live worker's device, the duration from
its measured speed (or a labelled prior), warnings for long runs and too little data; after it,
cautions beside figures measured on too few pairs; and where a running run is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.models import Run, RunKind, RunPhase, RunStatus, Worker
from app.models.types import utcnow
from app.run_kinds import CPU, GPU, KINDS, device_defaults
from app.services import runs, workers
from app.services.runs import sizing
from tests.utils.factories import make_pair, make_project, make_user, make_vote


def _worker(
    session: Session, hostname: str, device: str, *, ago: timedelta = timedelta(0), **fields
) -> Worker:  # type: ignore[no-untyped-def]
    worker = workers.report_worker(
        session, hostname=hostname, device=device, device_count=0 if device == "cpu" else 1,
        memory_bytes=fields.pop("memory_bytes", 2**34), cpu_count=8, now=utcnow() - ago,
    )  # fmt: skip
    for name, value in fields.items():
        setattr(worker, name, value)
    session.flush()
    return worker


def _labelled(session: Session, pairs: int):  # type: ignore[no-untyped-def]
    project = make_project(session, "p")
    ann, bob = make_user(session, "ann"), make_user(session, "bob")
    for i in range(pairs):
        comparison = make_pair(session, project, f"q{i}", "a", "b")
        make_vote(session, comparison, ann, "A")
        make_vote(session, comparison, bob, "A")  # two votes, one pair by majority
    return project


def test_defaults_follow_the_fastest_live_worker(session: Session) -> None:
    assert workers.fastest_live(session) is None
    assert sizing.launch_defaults(RunKind.generate, None) == device_defaults(RunKind.generate, CPU)
    assert device_defaults(RunKind.generate, CPU) == {"num_prompts": 16, "max_new_tokens": 64}
    assert device_defaults(RunKind.dpo, GPU) == {}
    for kind, entry in KINDS.items():  # every CPU override is a valid config
        entry.config(**device_defaults(kind, CPU))
        assert set(entry.sizing.prior) == {CPU, GPU}

    _worker(session, "laptop", "cpu")
    _worker(session, "gone", "cuda:NVIDIA H200", ago=timedelta(hours=1))  # not live
    assert workers.fastest_live(session).hostname == "laptop"  # type: ignore[union-attr]
    assert sizing.launch_defaults(RunKind.ppo, workers.fastest_live(session))["total_episodes"] == 64
    _worker(session, "gpu-1", "cuda:NVIDIA H200", memory_bytes=141 * 2**30)
    fastest = workers.fastest_live(session)
    assert fastest is not None and fastest.hostname == "gpu-1"
    assert sizing.launch_defaults(RunKind.ppo, fastest) == {}
    assert workers.describe(fastest) == "cuda:NVIDIA H200, 141 GiB (gpu-1)"


def test_estimate_from_measured_speed_and_from_the_prior(session: Session) -> None:
    project = _labelled(session, 120)  # 240 judgments, 120 pairs by majority
    config = runs.resolve_config(RunKind.dpo, {"epochs": 2, "eval_fraction": 0.25})
    worker = _worker(session, "laptop", "cpu")

    prior = sizing.estimate(session, kind=RunKind.dpo, project=project, config=config, worker=worker)
    overhead, per_pair = KINDS[RunKind.dpo].sizing.prior[CPU]
    assert prior.data_size == 120 and prior.units == 180  # 90 pairs trained on, twice
    assert not prior.measured and "prior" in prior.source
    assert prior.seconds == overhead + 180 * per_pair
    assert any("would take about" in w for w in prior.warnings)  # 25 s a pair on CPU: over 30 min

    workers.record_speed(session, hostname="laptop", kind=RunKind.dpo, units=90, seconds=180, overhead_s=30)
    measured = sizing.estimate(session, kind=RunKind.dpo, project=project, config=config, worker=worker)
    assert measured.measured and measured.source == "measured on laptop"
    assert measured.seconds == 30 + 180 * 2.0  # 2 s a pair: 6.5 minutes
    assert sizing.duration(measured.seconds) == "6 min" and measured.warnings == []

    # a second measurement is averaged with the first
    entry = workers.record_speed(
        session, hostname="laptop", kind=RunKind.dpo, units=10, seconds=40, overhead_s=10
    )
    assert entry == {"s_per_unit": 3.0, "overhead_s": 20.0, "unit": "pairs", "runs": 2}

    # max_steps bounds the work whatever the data size
    capped = runs.resolve_config(RunKind.dpo, {"max_steps": 5, "batch_size": 4})
    assert (
        sizing.estimate(session, kind=RunKind.dpo, project=project, config=capped, worker=worker).units == 20
    )
    # no worker at all: CPU priors
    assert (
        sizing.estimate(session, kind=RunKind.dpo, project=project, config=config, worker=None).device == CPU
    )


def test_small_data_warnings(session: Session) -> None:
    project = _labelled(session, 4)
    config = runs.resolve_config(RunKind.reward, {})
    found = sizing.estimate(session, kind=RunKind.reward, project=project, config=config, worker=None)
    assert found.data_size == 4
    assert any(w.startswith("Only 4 pairs: below 50") for w in found.warnings), found.warnings
    assert any("No pair is held out" in w for w in found.warnings)  # 4 x 0.1 rounds to 0
    warnings = sizing.data_warnings(RunKind.reward, {"eval_fraction": 0.1}, 60)
    assert warnings == ["About 6 held-out pairs: an accuracy on 6 is ± 40%, too few to mean anything."]
    assert sizing.data_warnings(RunKind.reward, {"eval_fraction": 0.1}, 400) == []
    # no data at all: what creating the run would say
    empty = make_project(session, "empty")
    dpo = runs.resolve_config(RunKind.dpo, {})
    nothing = sizing.estimate(session, kind=RunKind.dpo, project=empty, config=dpo, worker=None)
    assert nothing.seconds is None and "no human judgments" in nothing.warnings[0]


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (
            {"eval/accuracy": 1.0, "eval/pairs": 1.0},
            "eval/accuracy 1 on 1 held-out pair: too few to mean anything (± 98%).",
        ),
        ({"accuracy": 0.75, "n": 8}, "accuracy 0.75 on 8 held-out pairs: too few to mean anything (± 35%)."),
        ({"eval/accuracy": 0.8, "eval/pairs": 200.0}, None),
    ],
)
def test_cautions_beside_the_figures(session: Session, summary: dict, expected: str | None) -> None:
    project = _labelled(session, 60)
    run = Run(project_id=project.id, kind=RunKind.evaluate, status=RunStatus.succeeded, config={},
              summary=summary, snapshot_size=60)  # fmt: skip
    session.add(run)
    session.flush()
    cautions = sizing.run_cautions(session, run)
    assert cautions == ([expected] if expected else [])


def test_where_a_running_run_is(session: Session) -> None:
    run = Run(project_id=make_project(session, "q").id, kind=RunKind.sft, status=RunStatus.running)
    assert sizing.current_phase(run) is None
    run.phase = RunPhase.loading
    assert sizing.current_phase(run) == "loading the model"
    run.phase, run.step, run.total_steps = RunPhase.training, 3, 10
    assert sizing.current_phase(run) is None
    run.status = RunStatus.succeeded
    run.phase = RunPhase.saving
    assert sizing.current_phase(run) is None
