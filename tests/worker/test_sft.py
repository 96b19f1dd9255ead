"""SFT: the trained model assigns the demonstrated responses a much higher likelihood."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.schemas.training import SFTConfig
from tests.worker.conftest import completion_logps, make_prompts, weights_changed
from worker.training.base import Cancelled, ModelRef, PrintReporter
from worker.training.models import load_policy, load_tokenizer
from worker.training.sft import train_sft

RESPONSES = ["the cat is happy", "a blue bird can sing", "the sea is big and cold", "i like green apple"]


def make_demos(n: int, seed: int) -> list[dict]:
    """Each prompt asks about a subject; the answer depends on the prompt's index only."""
    return [
        {"messages": messages, "response": RESPONSES[i % len(RESPONSES)]}
        for i, messages in enumerate(make_prompts(n, seed))
    ]


def mean_response_nll(ref: ModelRef, demos: list[dict]) -> float:
    tokenizer = load_tokenizer(ref)
    model = load_policy(ref, tokenizer)
    logps = completion_logps(model, tokenizer, [d["messages"] for d in demos], [d["response"] for d in demos])
    return float(-logps.mean())


def test_sft_lowers_the_loss_on_demonstrations(tiny_base: ModelRef, tmp_path: Path) -> None:
    demos = make_demos(32, seed=1)
    config = SFTConfig(learning_rate=3e-3, batch_size=8, max_steps=24, max_length=64, seed=0)
    reporter = PrintReporter()

    result = train_sft(
        config=config, base=tiny_base, demos=demos, output_dir=tmp_path / "sft", reporter=reporter
    )

    # learning is proven: the demonstrated responses are far likelier than under the base
    before, after = (
        mean_response_nll(tiny_base, demos),
        mean_response_nll(ModelRef(str(result.output_dir)), demos),
    )
    assert after < 0.5 * before, (before, after)
    # the weights changed, and the reported loss fell step after step
    base_weights = load_policy(tiny_base, load_tokenizer(tiny_base)).state_dict()
    assert weights_changed(
        base_weights, load_policy(ModelRef(str(result.output_dir)), load_tokenizer(tiny_base))
    )
    losses = reporter.series("loss/train")
    assert len(losses) == config.max_steps and losses[-1] < 0.5 * losses[0]
    assert [s for s, m in reporter.history if "loss/train" in m] == list(range(1, config.max_steps + 1))
    assert result.metrics["loss/train"] == losses[-1] and not result.is_adapter
    saved = json.loads((result.output_dir / "training_config.json").read_text())
    assert saved["method"] == "sft" and saved["config"]["max_steps"] == config.max_steps


def test_sft_reports_held_out_loss_and_trains_lora(tiny_base: ModelRef, tmp_path: Path) -> None:
    demos = make_demos(24, seed=2)
    config = SFTConfig(learning_rate=3e-3, batch_size=8, max_steps=6, max_length=64, lora_r=4, lora_alpha=8)

    result = train_sft(
        config=config,
        base=tiny_base,
        demos=demos[:16],
        eval_demos=demos[16:],
        output_dir=tmp_path / "lora",
        reporter=PrintReporter(),
    )

    assert result.is_adapter and (result.output_dir / "adapter_config.json").exists()
    assert not (result.output_dir / "model.safetensors").exists()
    assert "loss/eval" in result.metrics and torch.isfinite(torch.tensor(result.metrics["loss/eval"]))
    adapter = ModelRef(str(result.output_dir), is_adapter=True, base=tiny_base)
    assert mean_response_nll(adapter, demos[:16]) < mean_response_nll(tiny_base, demos[:16])


def test_cancel_saves_nothing(tiny_base: ModelRef, tmp_path: Path, stop_after) -> None:
    reporter = stop_after(2)
    config = SFTConfig(learning_rate=1e-3, batch_size=4, max_steps=20, max_length=64)

    with pytest.raises(Cancelled):
        train_sft(
            config=config,
            base=tiny_base,
            demos=make_demos(16, 0),
            output_dir=tmp_path / "x",
            reporter=reporter,
        )

    assert not (tmp_path / "x").exists()
    assert [s for s, _ in reporter.history] == [1, 2]
    assert not any(p.name.startswith(".x.partial") for p in tmp_path.iterdir())
