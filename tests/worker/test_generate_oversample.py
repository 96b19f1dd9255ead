"""Oversampled generate runs: N completions per prompt, all kept; raters are sent the pair(s)
the reward model is least sure of (the smallest reward margin), scored as a score run would
score them, or a random pair when no reward model is given."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

torch = pytest.importorskip("torch")

from app.db import session_scope  # noqa: E402
from app.models import Comparison, Completion, ModelKind, ModelVersion, Prompt, RunKind, RunLog  # noqa: E402
from app.run_kinds import KINDS  # noqa: E402
from app.schemas.training import RewardConfig  # noqa: E402
from app.services import runs  # noqa: E402
from app.services.content import messages_hash  # noqa: E402
from app.services.runs.records import RunError  # noqa: E402
from tests.utils.factories import make_project  # noqa: E402
from tests.worker.conftest import make_oracle_pairs, make_prompts, run_to_end  # noqa: E402
from worker.training.base import ModelRef, PrintReporter  # noqa: E402
from worker.training.models import load_tokenizer  # noqa: E402
from worker.training.reward import train_reward  # noqa: E402

# Seed 1 samples four distinct non-empty texts for each of the three prompts.
SAMPLING = {
    "seed": 1,
    "max_new_tokens": 6,
    "temperature": 1.0,
    "top_p": 1.0,
    "batch_size": 4,
    "num_prompts": 3,
}


def _rewards(uri: str, messages: list[dict[str, str]], texts: list[str]) -> list[float]:
    """Each text's reward, one unpadded forward pass each, read at the last token: the reward
    model's own scores, independent of the worker's batching."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(ModelRef(uri))
    model = AutoModelForSequenceClassification.from_pretrained(uri).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            chat = tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": text}], tokenize=False
            )
            ids = tokenizer(chat, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out.append(float(model(input_ids=ids).logits[0, 0]))
    return out


def test_oversampled_run_sends_the_least_certain_pair_and_keeps_every_completion(
    pg_factory: sessionmaker[Session], pg_url: str, tiny_base: ModelRef, tmp_path: Path
) -> None:
    config = RewardConfig(learning_rate=1e-3, batch_size=8, max_steps=2, max_length=64, eval_fraction=0.0)
    pairs = make_oracle_pairs(8, 2, seed=0)
    train_reward(
        config=config, base=tiny_base, pairs=pairs, output_dir=tmp_path / "rm", reporter=PrintReporter()
    )
    with session_scope(pg_factory) as session:
        project = make_project(session, "over")
        for messages in list({messages_hash(m): m for m in make_prompts(12, seed=5)}.values())[:3]:
            session.add(
                Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
            )
        policy = ModelVersion(name="pi", kind=ModelKind.policy, uri=tiny_base.uri, project_id=project.id)
        rm = ModelVersion(name="rm", kind=ModelKind.reward, uri=str(tmp_path / "rm"), project_id=project.id)
        session.add_all([policy, rm])
        session.flush()
        policy_id, rm_id = policy.id, rm.id

        with pytest.raises(RunError, match="samples_per_prompt"):
            runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy_id,
                            config={"samples_per_prompt": 1})  # fmt: skip
        with pytest.raises(RunError, match="pairs_per_prompt 7 is more than the 6 pair"):
            runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy_id,
                            config={"samples_per_prompt": 4, "pairs_per_prompt": 7})  # fmt: skip
        with pytest.raises(RunError, match="scorer_model_id is for the two_samples strategy"):
            runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy_id,
                            config={"strategy": "versus", "versus_model_id": policy_id,
                                    "scorer_model_id": rm_id})  # fmt: skip
        with pytest.raises(RunError, match="reward model that picks the pairs"):  # a policy is no scorer
            runs.create_run(session, project=project, kind=RunKind.generate, base_model_id=policy_id,
                            config={"samples_per_prompt": 4, "scorer_model_id": policy_id})  # fmt: skip

    sizing = KINDS[RunKind.generate].sizing
    assert sizing.work({"strategy": "two_samples", "samples_per_prompt": 4, "max_new_tokens": 10}, 3) == 120

    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.generate, base_model_id=policy_id,
                     config={**SAMPLING, "samples_per_prompt": 4, "scorer_model_id": rm_id})  # fmt: skip
    assert run.summary["comparisons_created"] == 3 and run.summary["completions_stored"] == 12
    assert run.summary["pairs_picked_by"] == "reward"
    with pg_factory() as session:
        prompts = session.scalars(select(Prompt).order_by(Prompt.id)).all()
        for prompt in prompts:
            texts = list(session.scalars(select(Completion.text).where(Completion.prompt_id == prompt.id)))
            assert len(texts) == 4 and len(set(texts)) == 4  # every sample kept
            [pair] = session.scalars(select(Comparison).where(Comparison.prompt_id == prompt.id)).all()
            rewards = dict(zip(texts, _rewards(str(tmp_path / "rm"), prompt.messages, texts), strict=True))
            margins = sorted(
                (abs(rewards[x] - rewards[y]), {x, y}) for i, x in enumerate(texts) for y in texts[i + 1 :]
            )
            assert margins[1][0] - margins[0][0] > 1e-4  # one least certain pair, not a near tie
            a, b = (
                session.get_one(Completion, cid).text for cid in (pair.completion_a_id, pair.completion_b_id)
            )
            assert {a, b} == margins[0][1]
            p = 1 / (1 + math.exp(rewards[b] - rewards[a]))
            assert pair.predicted_preference == pytest.approx(p, abs=1e-4)
            assert pair.uncertainty == pytest.approx(1 - abs(2 * p - 1), abs=1e-4)
            assert pair.priority == pair.uncertainty and pair.scored_at is not None

    # Without a reward model: a random pair per prompt (2 here), unscored, and the log says so.
    before = {c.id for c in _comparisons(pg_factory)}
    unscored = {**SAMPLING, "samples_per_prompt": 3, "pairs_per_prompt": 2, "seed": 7}
    run = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.generate, base_model_id=policy_id, config=unscored
    )
    assert run.summary["pairs_picked_by"] == "random" and run.summary["comparisons_created"] == 6
    new = [c for c in _comparisons(pg_factory) if c.id not in before]
    assert len(new) == 6 and all(c.uncertainty is None and c.scored_at is None for c in new)
    with pg_factory() as session:
        logged = session.scalars(select(RunLog.message).where(RunLog.run_id == run.id)).all()
    assert any("picked at random" in message for message in logged)


def _comparisons(factory: sessionmaker[Session]) -> list[Comparison]:
    with factory() as session:
        rows = list(session.scalars(select(Comparison)))
        session.expunge_all()
        return rows
