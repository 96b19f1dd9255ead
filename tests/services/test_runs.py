"""Runs: config resolution, frozen snapshots, the state machine, double delivery, reaping,
and the retraining schedule's chain. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    Demonstration,
    Judgment,
    ModelKind,
    ModelVersion,
    Project,
    Role,
    Run,
    RunKind,
    RunStatus,
    Schedule,
)
from app.models.types import utcnow
from app.services import runs
from app.services.content import text_hash
from app.services.rating import JudgmentInput, claim_next, submit_judgment
from app.services.runs import schedules
from tests.utils.factories import make_pair, make_project, make_user, make_vote


def _model(session: Session, name: str, kind: ModelKind = ModelKind.policy) -> ModelVersion:
    model = ModelVersion(name=name, kind=kind, uri=f"/models/{name}")
    session.add(model)
    session.flush()
    return model


def _judge_all(session: Session, project, rater) -> int:  # type: ignore[no-untyped-def]
    count = 0
    while (assignment := claim_next(session, project=project, rater_id=rater.id)) is not None:
        submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1)
        )
        count += 1
    return count


def test_config_is_resolved_and_validated(session: Session) -> None:
    resolved = runs.resolve_config(RunKind.dpo, {"beta": "0.2"})
    assert resolved["beta"] == 0.2 and resolved["loss_type"] == "sigmoid" and "learning_rate" in resolved
    with pytest.raises(runs.RunError, match="beta"):
        runs.resolve_config(RunKind.dpo, {"beta": -1})
    with pytest.raises(runs.RunError, match="nonsense"):
        runs.resolve_config(RunKind.sft, {"nonsense": 1})
    with pytest.raises(runs.RunError, match="mini_batch_size"):
        runs.resolve_config(RunKind.ppo, {"batch_size": 8, "mini_batch_size": 3})


def test_inputs_are_checked(session: Session) -> None:
    project = make_project(session)
    policy, reward = _model(session, "p"), _model(session, "r", ModelKind.reward)
    with pytest.raises(runs.RunError, match="no accepted demonstrations"):
        runs.create_run(session, project=project, kind=RunKind.sft, base_model_id=policy.id)
    with pytest.raises(runs.RunError, match="is a reward model"):
        runs.create_run(session, project=project, kind=RunKind.dpo, base_model_id=reward.id)
    with pytest.raises(runs.RunError, match="choose a reward model"):
        runs.create_run(session, project=project, kind=RunKind.ppo, base_model_id=policy.id)


def test_snapshot_is_frozen_at_creation(session: Session) -> None:
    project = make_project(session, overlap=1)
    for i in range(3):
        make_pair(session, project, f"q{i}", f"a{i}", f"b{i}")
    rater = make_user(session, "r")
    assignment = claim_next(session, project=project, rater_id=rater.id)
    submit_judgment(session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1))
    policy = _model(session, "p")
    run = runs.create_run(session, project=project, kind=RunKind.reward, base_model_id=policy.id)
    _judge_all(session, project, rater)  # two more judgments arrive after the run was created
    assert session.query(Judgment).count() == 3
    assert run.snapshot_size == 1 and len(runs.snapshot_ids(session, run.id)) == 1
    again = runs.retry_run(session, run=_finish(session, run), created_by_id=None)
    assert runs.snapshot_ids(session, again.id) == runs.snapshot_ids(session, run.id)


def _finish(session: Session, run):  # type: ignore[no-untyped-def]
    runs.fail(session, run=run, error="test")
    return run


def test_double_delivery_runs_once_and_cancel(session: Session) -> None:
    project = make_project(session)
    make_pair(session, project, "q", "a", "b")
    policy = _model(session, "p")
    run = runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy.id)
    first = runs.claim(session, run_id=run.id, worker="w1")
    second = runs.claim(session, run_id=run.id, worker="w2")
    assert first is not None and second is None and run.worker == "w1"
    assert runs.request_cancel(session, run=run) is None and run.cancel_requested
    assert run.status == RunStatus.running  # stops at its next step, not now
    stop = runs.record_progress(session, run_id=run.id, step=1, total=2, metrics={"loss": 1.0})
    assert stop is True

    queued = runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy.id)
    queued.celery_task_id = "task-1"
    assert runs.request_cancel(session, run=queued) == "task-1"
    assert queued.status == RunStatus.cancelled
    assert runs.claim(session, run_id=queued.id, worker="w1") is None
    with pytest.raises(runs.RunError, match="already cancelled"):
        runs.request_cancel(session, run=queued)


def test_lost_worker_is_reaped(session: Session) -> None:
    project = make_project(session)
    make_pair(session, project, "q", "a", "b")
    run = runs.create_run(
        session, project=project, kind=RunKind.generate, base_model_id=_model(session, "p").id
    )
    runs.claim(session, run_id=run.id, worker="w1", now=utcnow() - timedelta(hours=1))
    assert runs.reap_stale(session) == [run.id]
    assert run.status == RunStatus.failed and "stopped reporting" in (run.error or "")


def test_schedule_chain(session: Session) -> None:
    project = make_project(session, overlap=1)
    for i in range(4):
        make_pair(session, project, f"q{i}", f"a{i}", f"b{i}")
    policy = _model(session, "base")
    schedule = Schedule(project_id=project.id, min_new_judgments=3, method=RunKind.dpo,
                        config={"base_model_id": policy.id})  # fmt: skip
    session.add(schedule)
    session.flush()
    assert schedules.tick(session) == []  # not enough judgments
    _judge_all(session, project, make_user(session, "r"))
    (reward_run_id,) = schedules.tick(session)
    assert schedules.tick(session) == []  # the reward run is still queued
    reward_run = session.get(Run, reward_run_id)
    assert reward_run.kind == RunKind.reward and reward_run.base_model_id == policy.id
    rm = _model(session, "rm", ModelKind.reward)
    runs.claim(session, run_id=reward_run.id, worker="w")
    runs.succeed(session, run=reward_run, summary={}, model=None)
    reward_run.output_model_id = rm.id
    (dpo_run_id,) = schedules.tick(session)
    dpo_run = session.get(Run, dpo_run_id)
    assert dpo_run.kind == RunKind.dpo and dpo_run.parent_run_id == reward_run.id
    new_policy = _model(session, "policy-2")
    runs.claim(session, run_id=dpo_run.id, worker="w")
    runs.succeed(session, run=dpo_run, summary={})
    dpo_run.output_model_id = new_policy.id
    (generate_run_id,) = schedules.tick(session)
    generate_run = session.get(Run, generate_run_id)
    assert generate_run.kind == RunKind.generate and generate_run.base_model_id == new_policy.id
    assert schedules.current_policy_id(session, schedule) == new_policy.id


def test_schedule_with_an_ai_judge_labels_first_and_counts_new_pairs(session: Session) -> None:
    """RLAIF in the loop: judge -> reward (human and AI labels) -> DPO -> generate; the policy's
    new pairs alone trigger the next round, with nobody rating."""
    project = make_project(session, overlap=1)
    for i in range(3):
        make_pair(session, project, f"q{i}", f"a{i}", f"b{i}")
    policy, judge = _model(session, "base"), _model(session, "judge-rm", ModelKind.reward)
    schedule = Schedule(project_id=project.id, min_new_judgments=3, method=RunKind.dpo,
                        config={"base_model_id": policy.id, "judge_model_id": judge.id})  # fmt: skip
    session.add(schedule)
    session.flush()
    assert schedules.pending(session, schedule) == 3  # three pairs the judge will label

    def finish(run_id: int, output: ModelVersion | None = None) -> Run:
        run = session.get(Run, run_id)
        runs.claim(session, run_id=run_id, worker="w")
        runs.succeed(session, run=run, summary={})
        run.output_model_id = output.id if output else None
        session.flush()
        return run

    (judge_run_id,) = schedules.tick(session)
    judge_run = session.get(Run, judge_run_id)
    assert judge_run.kind == RunKind.judge and judge_run.config["judge_model_id"] == judge.id
    assert judge_run.config["comparisons"] == "unjudged" and judge_run.snapshot_size == 3
    assert schedules.pending(session, schedule) == 0
    ai_rater = make_user(session, "ai-judge:judge-rm", Role.judge)
    ai_votes = {  # what the judge run stores
        make_vote(session, session.get(Comparison, cid), ai_rater, "A", source="ai").id
        for cid in runs.snapshot_ids(session, judge_run_id)
    }
    finish(judge_run_id)
    assert schedules.pending(session, schedule) == 0  # AI labels are not new human judgments
    (reward_run_id,) = schedules.tick(session)
    reward_run = session.get(Run, reward_run_id)
    assert reward_run.kind == RunKind.reward and reward_run.parent_run_id == judge_run_id
    assert reward_run.config["label_source"] == "both"
    assert set(runs.snapshot_ids(session, reward_run_id)) == ai_votes
    finish(reward_run_id, _model(session, "rm", ModelKind.reward))
    (dpo_run_id,) = schedules.tick(session)
    assert session.get(Run, dpo_run_id).config["label_source"] == "both"
    finish(dpo_run_id, _model(session, "policy-2"))
    (generate_run_id,) = schedules.tick(session)
    finish(generate_run_id)
    assert schedules.tick(session) == []  # the chain is complete and nothing new arrived

    # The new policy's pairs arrive (as a generate run stores them): the next round starts.
    fresh = {make_pair(session, project, f"new q{i}", f"new a{i}", f"new b{i}").id for i in range(3)}
    assert schedules.pending(session, schedule) == 3
    (next_judge_id,) = schedules.tick(session)
    next_judge = session.get(Run, next_judge_id)
    assert next_judge.kind == RunKind.judge
    assert set(runs.snapshot_ids(session, next_judge_id)) == fresh  # only what the judge has not labelled

    # Without a judge, pairs alone never trigger, and reward runs keep to human labels.
    plain = Schedule(project_id=make_project(session, "plain").id, min_new_judgments=1,
                     method=RunKind.dpo, config={"base_model_id": policy.id})  # fmt: skip
    session.add(plain)
    session.flush()
    make_pair(session, session.get(Project, plain.project_id), "p", "a", "b")
    assert schedules.pending(session, plain) == 0


def test_demonstration_snapshot(session: Session) -> None:
    project = make_project(session)
    pair = make_pair(session, project, "q", "a", "b")
    session.add(Demonstration(project_id=project.id, prompt_id=pair.prompt_id, response="ideal",
                              content_hash=text_hash("ideal")))  # fmt: skip
    session.flush()
    run = runs.create_run(session, project=project, kind=RunKind.sft, base_model_id=_model(session, "p").id,
                          config={"epochs": 2})  # fmt: skip
    assert run.snapshot_size == 1 and run.config["epochs"] == 2.0 and run.status == RunStatus.queued
