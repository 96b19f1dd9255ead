"""An SFT run on rater-written demonstrations only: the snapshot holds exactly the accepted
written ones (rows and sources proven, each with its provenance), and the run's loss on them falls
while the model learns their responses (and not the imported ones it was not given)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.db import session_scope
from app.models import ModelKind, ModelVersion, Run, RunItem, RunKind, RunLog, RunMetric
from app.services.exporting import Pseudonyms
from tests.utils.factories import make_project, make_user
from tests.utils.tiny_models import make_tiny_causal_lm
from tests.utils.writing_data import IMPORTED, seed_demonstrations
from tests.worker.conftest import completion_logps, run_to_end
from worker.data import demonstrations
from worker.training.base import ModelRef
from worker.training.models import load_policy, load_tokenizer


def _nll(uri: str, messages: list, responses: list[str]) -> float:
    ref = ModelRef(uri)
    tokenizer = load_tokenizer(ref)
    model = load_policy(ref, tokenizer)
    return float(-completion_logps(model, tokenizer, messages, responses).mean())


def test_sft_on_written_demonstrations_only(
    pg_factory: sessionmaker[Session], pg_url: str, tmp_path: Path
) -> None:
    base = make_tiny_causal_lm(tmp_path / "base", seed=0)
    with session_scope(pg_factory) as session:
        project = make_project(session, "writing")
        writer, editor, reviewer = (make_user(session, name) for name in ("wendy", "eddie", "rita"))
        seeded = seed_demonstrations(session, project, writer=writer, editor=editor, reviewer=reviewer, n=16)
        model = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(base))
        session.add(model)
        session.flush()
        base_id, writer_id = model.id, writer.id

    config = {"demonstration_source": "written", "learning_rate": 3e-3, "batch_size": 8,
              "max_steps": 24, "max_length": 64, "seed": 0}  # fmt: skip
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.sft, base_model_id=base_id, config=config)

    with pg_factory() as session:
        # the snapshot: exactly the accepted written demonstrations (not the rejected or pending
        # written ones, not the improved or imported ones)
        items = session.scalars(
            select(RunItem.item_id).where(RunItem.run_id == run.id).order_by(RunItem.item_id)
        )
        assert list(items) == seeded.written
        rows = demonstrations(session, session.get(Run, run.id), seeded.written).data
        author = Pseudonyms(get_settings().secret_key)(writer_id)
        assert [row["demonstration_id"] for row in rows] == seeded.written
        assert {(row["source"], row["author"], row["review_status"], row["review_score"], row["reviews"])
                for row in rows} == {("written", author, "accepted", 4.0, 1)}  # fmt: skip
        assert all(row["edited_from_completion_id"] is None for row in rows)
        logs = [line for (line,) in session.execute(select(RunLog.message).where(RunLog.run_id == run.id))]
        assert "16 demonstrations: 16 written; 16 accepted; mean review score 4.00 (16 reviewed)" in logs
        metric = select(RunMetric.value).where(RunMetric.run_id == run.id, RunMetric.name == "loss/train")
        losses = list(session.scalars(metric.order_by(RunMetric.step)))
        trained = session.get(ModelVersion, run.output_model_id)
        assert trained is not None
        uri = trained.uri

    # its loss on them fell (measured: 5.0 -> 2.1), and the model learned the written responses
    # (their NLL fell from 28.8 to 11.8) but not the imported ones it was not given, though they
    # answer the same prompts (18.4 -> 19.7): each text compared with itself before training
    assert len(losses) == config["max_steps"] and losses[-1] < 0.5 * losses[0], losses
    messages, responses = [row["messages"] for row in rows], [row["response"] for row in rows]
    before, after = _nll(str(base), messages, responses), _nll(uri, messages, responses)
    assert after < 0.5 * before, (before, after)
    imported = [IMPORTED] * len(messages)
    imported_before, imported_after = _nll(str(base), messages, imported), _nll(uri, messages, imported)
    assert imported_after > 0.9 * imported_before, (imported_before, imported_after)
