"""A schedule that scores the open pairs: reward -> score -> DPO -> generate -> score, each step
started when the previous one succeeded; a step with no open pair to score is left out. On
SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, Run, RunKind, Schedule
from app.services import runs
from app.services.rating import JudgmentInput, claim_next, submit_judgment
from app.services.runs import schedules
from tests.utils.factories import make_pair, make_project, make_user


def _model(session: Session, name: str, kind: ModelKind = ModelKind.policy) -> ModelVersion:
    model = ModelVersion(name=name, kind=kind, uri=f"/models/{name}")
    session.add(model)
    session.flush()
    return model


def _finish(session: Session, run_id: int, output: ModelVersion | None = None) -> Run:
    run = session.get(Run, run_id)
    assert run is not None
    runs.claim(session, run_id=run_id, worker="w")
    runs.succeed(session, run=run, summary={})
    run.output_model_id = output.id if output else None
    session.flush()
    return run


def test_schedule_scores_after_the_reward_model_and_after_generating(session: Session) -> None:
    project = make_project(session, overlap=2)
    pairs = [make_pair(session, project, f"q{i}", f"a{i}", f"b{i}") for i in range(4)]
    rater = make_user(session, "r")
    while (assignment := claim_next(session, project=project, rater_id=rater.id)) is not None:
        submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1)
        )
    policy = _model(session, "base")
    schedules.save(session, project=project, enabled=True, min_new_judgments=3, method=RunKind.dpo,
                   base_model_id=policy.id, judge_model_id=None, score=True)  # fmt: skip
    schedule = session.query(Schedule).one()
    assert schedule.config["score_open_pairs"] is True

    (reward_id,) = schedules.tick(session)
    rm = _model(session, "rm", ModelKind.reward)
    _finish(session, reward_id, rm)
    (score_id,) = schedules.tick(session)
    score = session.get(Run, score_id)
    assert score is not None and score.kind == RunKind.score and score.reward_model_id == rm.id
    assert score.parent_run_id == reward_id
    # every pair has one vote of two: all four are open
    assert sorted(runs.snapshot_ids(session, score_id)) == sorted(p.id for p in pairs)
    _finish(session, score_id)
    (dpo_id,) = schedules.tick(session)
    dpo = session.get(Run, dpo_id)
    assert dpo is not None and dpo.kind == RunKind.dpo and dpo.parent_run_id == score_id
    _finish(session, dpo_id, _model(session, "policy-2"))
    (generate_id,) = schedules.tick(session)
    _finish(session, generate_id)
    (rescore_id,) = schedules.tick(session)
    rescore = session.get(Run, rescore_id)
    assert rescore is not None and rescore.kind == RunKind.score and rescore.reward_model_id == rm.id
    _finish(session, rescore_id)
    assert schedules.tick(session) == []  # the chain is complete

    # a re-save from the form keeps or turns off scoring as asked
    schedules.save(session, project=project, enabled=True, min_new_judgments=3, method=RunKind.dpo,
                   base_model_id=policy.id, judge_model_id=None)  # fmt: skip
    assert schedule.config["score_open_pairs"] is True
    schedules.save(session, project=project, enabled=True, min_new_judgments=3, method=RunKind.dpo,
                   base_model_id=policy.id, judge_model_id=None, score=False)  # fmt: skip
    assert schedule.config["score_open_pairs"] is False


def test_no_score_run_when_nothing_is_open(session: Session) -> None:
    project = make_project(session, overlap=1)
    for i in range(3):
        make_pair(session, project, f"q{i}", f"a{i}", f"b{i}")
    rater = make_user(session, "r")
    while (assignment := claim_next(session, project=project, rater_id=rater.id)) is not None:
        submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1)
        )
    policy = _model(session, "base")
    schedules.save(session, project=project, enabled=True, min_new_judgments=3, method=RunKind.dpo,
                   base_model_id=policy.id, judge_model_id=None, score=True)  # fmt: skip
    (reward_id,) = schedules.tick(session)
    _finish(session, reward_id, _model(session, "rm", ModelKind.reward))
    (dpo_id,) = schedules.tick(session)
    dpo = session.get(Run, dpo_id)
    assert dpo is not None and dpo.kind == RunKind.dpo and dpo.parent_run_id == reward_id
