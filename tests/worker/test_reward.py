"""Reward model: learns a known preference (completions with 'banana' win) and generalises to
prompts it never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.schemas.training import RewardConfig
from tests.worker.conftest import TARGET, chat_ids, make_oracle_pairs, weights_changed
from worker.training._trl import split_by_prompt
from worker.training.base import Cancelled, ModelRef, PrintReporter
from worker.training.models import load_reward_model, load_tokenizer
from worker.training.reward import train_reward


@torch.no_grad()
def scores(ref: ModelRef, base: ModelRef, pairs: list[dict], side: str) -> torch.Tensor:
    """The saved model's reward for one side of each pair, read the way PPO will read it: (N,)."""
    tokenizer = load_tokenizer(base)
    model = load_reward_model(ref, tokenizer).eval()
    out = []
    for pair in pairs:
        ids = chat_ids(tokenizer, [*pair["messages"], {"role": "assistant", "content": pair[side]}])
        out.append(model(input_ids=torch.tensor([ids])).logits[0, 0])
    return torch.stack(out)


def test_reward_model_learns_the_oracle(tiny_base: ModelRef, tmp_path: Path) -> None:
    pairs = make_oracle_pairs(n_prompts=60, per_prompt=5, seed=0)  # 300 pairs
    config = RewardConfig(
        learning_rate=1e-3, batch_size=16, max_steps=30, max_length=64, eval_fraction=0.2, seed=0
    )
    reporter = PrintReporter()

    result = train_reward(
        config=config, base=tiny_base, pairs=pairs, output_dir=tmp_path / "rm", reporter=reporter
    )

    # held-out accuracy, on prompts never trained on, as reported by the trainer
    assert result.metrics["eval/accuracy"] >= 0.85, result.metrics
    assert result.metrics["eval/pairs"] == 60  # 12 held-out prompts x 5 pairs
    assert reporter.series("eval/accuracy") == [result.metrics["eval/accuracy"]]
    assert len(reporter.series("loss/train")) == config.max_steps
    # the saved directory loads as a one-output classifier and ranks fresh pairs like the oracle
    fresh = make_oracle_pairs(n_prompts=20, per_prompt=2, seed=99)
    trained = ModelRef(str(result.output_dir))
    accuracy = scores(trained, tiny_base, fresh, "chosen") > scores(trained, tiny_base, fresh, "rejected")
    assert accuracy.float().mean() >= 0.85
    tokenizer = load_tokenizer(tiny_base)
    model = load_reward_model(trained, tokenizer)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    # the backbone moved away from the base (the score head is new, so compare shared weights)
    assert weights_changed(load_reward_model(tiny_base, tokenizer).model.state_dict(), model.model)
    assert TARGET not in " ".join(p["rejected"] for p in pairs)


def test_reward_lora_with_margin_and_centering(tiny_base: ModelRef, tmp_path: Path) -> None:
    pairs = make_oracle_pairs(n_prompts=20, per_prompt=4, seed=1)
    config = RewardConfig(
        learning_rate=2e-3,
        batch_size=16,
        max_steps=8,
        max_length=64,
        lora_r=4,
        use_margin=True,
        center_rewards_coefficient=0.01,
    )

    result = train_reward(
        config=config, base=tiny_base, pairs=pairs, output_dir=tmp_path / "rm", reporter=PrintReporter()
    )

    assert result.is_adapter and (result.output_dir / "adapter_config.json").exists()
    adapter = ModelRef(str(result.output_dir), is_adapter=True, base=tiny_base)
    margin = scores(adapter, tiny_base, pairs, "chosen") - scores(adapter, tiny_base, pairs, "rejected")
    assert margin.mean() > 0  # the adapter (with its trained score head) loads and prefers the oracle


def test_split_holds_out_whole_prompts_deterministically() -> None:
    pairs = make_oracle_pairs(n_prompts=30, per_prompt=3, seed=0)
    train, held = split_by_prompt(pairs, 0.2, seed=7)
    assert {p["prompt_id"] for p in train}.isdisjoint({p["prompt_id"] for p in held})
    assert len({p["prompt_id"] for p in held}) == 6 and len(train) + len(held) == len(pairs)
    assert split_by_prompt(pairs, 0.2, seed=7) == (train, held)
    assert split_by_prompt(pairs, 0.2, seed=8)[1] != held
    assert split_by_prompt(pairs, 0.0, seed=7) == (pairs, [])


def test_cancel_saves_nothing(tiny_base: ModelRef, tmp_path: Path, stop_after) -> None:
    config = RewardConfig(learning_rate=1e-3, batch_size=4, max_steps=20, max_length=64)
    with pytest.raises(Cancelled):
        train_reward(
            config=config,
            base=tiny_base,
            pairs=make_oracle_pairs(10, 4, seed=0),
            output_dir=tmp_path / "x",
            reporter=stop_after(2),
        )
    assert not (tmp_path / "x").exists()
