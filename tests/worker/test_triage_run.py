"""Triage runs through the worker with tiny judge models: a reward model that learned a known
preference takes the pairs it is sure of off the human queue (an audit share aside) and is right on
them; an LM judge that answers by position is never sure, so every pair stays with raters."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import (
    Choice,
    Comparison,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    RunKind,
    TriageState,
)
from app.schemas.training import RewardConfig
from app.services import rating, runs
from app.services.rating import JudgmentInput, choice_to_pick
from app.services.runs.records import RunError
from app.services.triage import update_triage_settings
from tests.utils.factories import make_comparison, make_project, make_user
from tests.utils.tiny_models import make_forced_causal_lm
from tests.worker.conftest import make_oracle_pairs, run_to_end
from worker.training.base import ModelRef, PrintReporter
from worker.training.judge import RewardJudge
from worker.training.reward import train_reward


def test_a_reward_model_judge_takes_the_pairs_it_is_sure_of(
    pg_factory: sessionmaker[Session], pg_url: str, tiny_base: ModelRef, tmp_path: Path
) -> None:
    rm_dir = tmp_path / "rm"
    config = RewardConfig(learning_rate=1e-3, batch_size=16, max_steps=30, max_length=64, eval_fraction=0.0)
    train_reward(config=config, base=tiny_base, pairs=make_oracle_pairs(60, 5, seed=0), output_dir=rm_dir,
                 reporter=PrintReporter())  # fmt: skip
    fresh = make_oracle_pairs(20, 2, seed=99)  # 40 pairs the reward model has not seen
    rng = random.Random(5)
    sides = [rng.random() < 0.5 for _ in fresh]
    # the threshold: the median score gap of this judge on these pairs, so that about half are sure
    judge = RewardJudge(ModelRef(str(rm_dir)), max_length=64, batch_size=16, device="cpu")
    messages = [p["messages"] for p in fresh]
    chosen = judge.scores(messages, [p["chosen"] for p in fresh])
    rejected = judge.scores(messages, [p["rejected"] for p in fresh])
    gaps = [abs(x - y) for x, y in zip(chosen, rejected, strict=True)]
    threshold = statistics.median(gaps)
    with session_scope(pg_factory) as session:
        project = make_project(session, "triage", overlap=1)
        truth: dict[int, str] = {}
        for pair, flip in zip(fresh, sides, strict=True):
            a, b = (pair["rejected"], pair["chosen"]) if flip else (pair["chosen"], pair["rejected"])
            truth[make_comparison(session, project, pair["messages"], a, b).id] = "B" if flip else "A"
        rm = ModelVersion(name="tiny-rm", kind=ModelKind.reward, uri=str(rm_dir), project_id=project.id)
        session.add(rm)
        session.flush()
        update_triage_settings(session, project=project, model_id=rm.id, margin=threshold, audit_share=0.25)
        rater = make_user(session, "ann")
        held = rating.claim_next(session, project=project, rater_id=rater.id)
        assert held is not None
        held_id, rater_id = held.comparison_id, rater.id

    run = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.triage, config={"max_length": 64, "batch_size": 16}
    )

    with pg_factory() as session:
        states = dict(session.execute(select(Comparison.id, Comparison.triage)).all())
        assert states[held_id] == TriageState.untriaged  # a rater held it: never triaged
        ai = {
            j.comparison_id: j
            for j in session.scalars(select(Judgment).where(Judgment.source == JudgmentSource.ai))
        }
        assert set(ai) == set(truth) - {held_id}  # one label per triaged pair, none on the held one
        sure = {
            cid for cid, j in ai.items() if j.choice != "tie" and j.provenance["triage_margin"] > threshold
        }
        assert 10 <= len(sure) <= 25  # about half, by the median
        for cid, j in ai.items():
            assert j.provenance["triage"] == states[cid].value and j.run_id == run.id
            assert math.isclose(
                j.provenance["triage_margin"], abs(j.provenance["scores"][0] - j.provenance["scores"][1])
            )
            assert (states[cid] in (TriageState.judge, TriageState.audit)) == (cid in sure)
        audited = [cid for cid in sure if states[cid] == TriageState.audit]
        assert len(audited) == math.floor(0.25 * len(sure) + 0.5)  # the share, exactly
        taken = [cid for cid in sure if states[cid] == TriageState.judge]
        right = sum(ai[cid].choice == truth[cid] for cid in taken) / len(taken)
        assert right >= 0.9, right  # a sure judge that learned the preference is right on what it takes
        assert run.summary["to_judge"] == len(taken) and run.summary["to_audit"] == len(audited)
        assert run.summary["to_humans"] == len(ai) - len(sure) and run.summary["human_votes_saved"] == len(
            taken
        )
        assert session.scalar(select(func.sum(Comparison.judgment_count))) == 0  # AI labels take no slot
        # the rater works through the queue: every pair but the judge's, each once
        project = session.scalars(select(Project)).one()
        served = []
        while (assignment := rating.claim_next(session, project=project, rater_id=rater_id)) is not None:
            served.append(assignment.comparison_id)
            pick = choice_to_pick(Choice(truth[assignment.comparison_id]), 1, a_on_left=assignment.a_on_left)
            rating.submit_judgment(session, project=project, rater_id=rater_id,
                                   data=JudgmentInput(assignment_id=assignment.id, pick=pick))  # fmt: skip
        assert sorted(served) == sorted(set(truth) - set(taken))
        session.commit()
        # nothing is left to triage
        with pytest.raises(RunError, match="no open pair to triage"):
            runs.create_run(session, project=project, kind=RunKind.triage, config={})


def test_a_judge_that_answers_by_position_is_never_sure(
    session_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    always_a = make_forced_causal_lm(tmp_path / "always-a", "A", extra_words=["A", "B"])
    with session_scope(session_factory) as session:
        project = make_project(session, "lm", instructions="Prefer the kinder answer.")
        for i in range(6):
            make_comparison(
                session, project, [{"role": "user", "content": f"say hi {i}"}], "hello", "go away"
            )
        judge = ModelVersion(name="always-a", kind=ModelKind.policy, uri=str(always_a))
        session.add(judge)
        session.flush()
        update_triage_settings(session, project=project, model_id=judge.id, margin=0.0, audit_share=0.5)
    run = run_to_end(
        session_factory, db_url, tmp_path, kind=RunKind.triage, config={"max_length": 256, "batch_size": 4}
    )
    with session_factory() as session:
        states = list(session.scalars(select(Comparison.triage)))
        assert states == [TriageState.human] * 6  # "A" in both orders: a tie, margin 0
        assert run.summary["to_judge"] == 0 and run.summary["ties"] == 6
        votes = session.scalars(select(Judgment).where(Judgment.source == JudgmentSource.ai)).all()
        assert len(votes) == 6 and all(v.provenance["triage_margin"] == 0.0 for v in votes)
