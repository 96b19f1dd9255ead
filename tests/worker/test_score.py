"""Score runs: a tiny reward model that learned a known preference (or an ensemble of two
versions) predicts each open pair's preference and uncertainty; the scores are stored on the open
pairs only, and the uncertainty strategy then serves the least certain pair first."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Comparison, ModelKind, ModelVersion, Project, RunKind, SelectionStrategy
from app.schemas.training import RewardConfig
from app.services import rating, runs
from app.services.runs.scores import combine
from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user
from tests.worker.conftest import make_oracle_pairs, run_to_end
from worker.training.base import ModelRef, PrintReporter
from worker.training.reward import train_reward


def test_combine_margin_and_disagreement() -> None:
    assert combine([0.5], "margin") == (0.5, 1.0)
    assert combine([0.9], "margin") == pytest.approx((0.9, 0.2))
    mean, spread = combine([0.2, 0.8], "disagreement")
    assert mean == pytest.approx(0.5) and spread == pytest.approx(0.3)


def _train(base: ModelRef, out: Path, steps: int) -> None:
    config = RewardConfig(
        learning_rate=1e-3, batch_size=16, max_steps=steps, max_length=64, eval_fraction=0.0
    )
    train_reward(config=config, base=base, pairs=make_oracle_pairs(60, 5, seed=0), output_dir=out,
                 reporter=PrintReporter())  # fmt: skip


def test_score_run_predicts_the_known_preference_on_open_pairs(
    pg_factory: sessionmaker[Session], pg_url: str, tiny_base: ModelRef, tmp_path: Path
) -> None:
    _train(tiny_base, tmp_path / "rm-weak", steps=1)
    _train(tiny_base, tmp_path / "rm", steps=30)
    rng = random.Random(4)
    with session_scope(pg_factory) as session:
        project = make_project(session, "scored", overlap=1)
        rater = make_user(session, "ann")
        truth: dict[int, str] = {}
        for i, pair in enumerate(make_oracle_pairs(20, 2, seed=99)):  # 40 fresh pairs
            flip = rng.random() < 0.5
            a, b = (pair["rejected"], pair["chosen"]) if flip else (pair["chosen"], pair["rejected"])
            comparison = make_comparison(session, project, pair["messages"], a, b)
            truth[comparison.id] = "B" if flip else "A"
            if i < 10:  # complete: not open, not scored
                make_human_judgment(session, comparison, rater, truth[comparison.id])
        weak = ModelVersion(
            name="rm-weak", kind=ModelKind.reward, uri=str(tmp_path / "rm-weak"), project_id=project.id
        )
        session.add(weak)
        session.flush()
        rm = ModelVersion(name="rm", kind=ModelKind.reward, uri=str(tmp_path / "rm"), project_id=project.id)
        session.add(rm)
        session.flush()
        rm_id = rm.id
        done = set(sorted(truth)[:10])

    config = {"max_length": 64, "batch_size": 16}
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.score, reward_model_id=rm_id, config=config)
    assert run.summary["pairs_scored"] == 30 and run.summary["ensemble"] == ["rm"]

    with pg_factory() as session:
        rows = {c.id: c for c in session.scalars(select(Comparison))}
        for cid in done:
            assert rows[cid].scored_at is None and rows[cid].predicted_preference is None
        open_ids = set(truth) - done
        right = 0
        for cid in open_ids:
            c = rows[cid]
            assert (
                c.scored_at is not None and c.predicted_preference is not None and c.uncertainty is not None
            )
            assert 0 <= c.predicted_preference <= 1 and c.priority == c.uncertainty
            assert c.uncertainty == pytest.approx(1 - abs(2 * c.predicted_preference - 1))
            right += (c.predicted_preference > 0.5) == (truth[cid] == "A")
        assert right / len(open_ids) >= 0.85, right
        # the learned model is sure of most pairs: low uncertainty on average
        assert sum(rows[cid].uncertainty for cid in open_ids) / len(open_ids) < 0.6  # type: ignore[misc]
        snapshot = {rows[cid].uncertainty for cid in open_ids}

    # an ensemble of the two versions, by their disagreement: the learned model and the one-step
    # model differ on every pair, and the prediction is the mean of their probabilities
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.score, reward_model_id=rm_id,
                     config=config | {"ensemble": 2, "measure": "disagreement"})  # fmt: skip
    assert run.summary["ensemble"] == ["rm", "rm-weak"]
    with pg_factory() as session:
        rows = {c.id: c for c in session.scalars(select(Comparison).where(Comparison.id.in_(open_ids)))}
        assert {c.uncertainty for c in rows.values()} != snapshot
        assert all(0 < c.uncertainty <= 0.5 for c in rows.values())  # type: ignore[operator]
        assert sum((c.predicted_preference > 0.5) == (truth[c.id] == "A") for c in rows.values()) >= 0.7 * 30  # type: ignore[operator]

    # the uncertainty strategy serves the pair the ensemble disagrees on most first
    with session_scope(pg_factory) as session:
        project = session.scalars(select(Project)).one()
        project.selection_strategy = SelectionStrategy.uncertainty
        first = rating.claim_next(session, project=project, rater_id=make_user(session, "bob").id)
        assert first is not None
        top = max(rows.values(), key=lambda c: (c.uncertainty, c.id))
        assert first.comparison_id == top.id
        assert not math.isnan(top.uncertainty)  # type: ignore[arg-type]

    # nothing open: a score run cannot be created
    with session_scope(pg_factory) as session:
        project = session.scalars(select(Project)).one()
        for comparison in session.scalars(select(Comparison)):
            comparison.judgment_count = project.overlap
        with pytest.raises(runs.RunError, match="no open pairs"):
            runs.create_run(
                session, project=project, kind=RunKind.score, reward_model_id=rm_id, config=config
            )
        session.rollback()
