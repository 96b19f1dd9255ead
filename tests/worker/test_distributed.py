"""Training in several processes through `accelerate launch` (worker/training/launch.py).

On a CPU: 2 processes, the gloo backend, tiny models. What a GPU host does with NCCL is the same
code with another backend, not exercised here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from app.schemas.training import PPOConfig
from tests.utils.tiny_models import make_tiny_causal_lm
from tests.worker.conftest import make_prompts, weights_changed
from worker.training.base import Cancelled, ModelRef, PrintReporter
from worker.training.launch import STOP_FILE, run_distributed
from worker.training.models import load_policy, load_reward_model, load_tokenizer, save_atomically

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

PROCESSES = 2
TIMEOUT_S = 300  # a deadlock fails the test instead of hanging it
RESPONSES = ["the cat is happy", "a blue bird can sing", "the sea is big and cold", "i like green apple"]


class StopAfter(PrintReporter):
    """The parent's reporter: asks to stop once `steps` steps arrived (the launcher then writes STOP)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.history) >= self.steps


def _demos(n: int) -> list[dict]:
    prompts = make_prompts(n, seed=1)
    return [{"messages": m, "response": RESPONSES[i % len(RESPONSES)]} for i, m in enumerate(prompts)]


def _ppo_models(root: Path) -> tuple[ModelRef, ModelRef]:
    """A tiny policy and a tiny reward model (a causal LM with a fixed, saved score head)."""
    policy = ModelRef(str(make_tiny_causal_lm(root / "policy", seed=0)))
    reward_base = ModelRef(str(make_tiny_causal_lm(root / "reward-base", seed=1)))
    tokenizer = load_tokenizer(reward_base)
    torch.manual_seed(1)
    reward_dir = save_atomically(load_reward_model(reward_base, tokenizer), tokenizer, root / "reward")
    return policy, ModelRef(str(reward_dir))


def test_sft_in_two_processes(tmp_path: Path) -> None:
    base = ModelRef(str(make_tiny_causal_lm(tmp_path / "base", seed=0)))
    work = tmp_path / "work"
    reporter = PrintReporter()
    max_steps = 8
    # per-device batch 4 x 2 processes = 8 demonstrations per optimizer step
    config = {"learning_rate": 3e-3, "batch_size": 4, "max_steps": max_steps, "max_length": 64, "seed": 0}

    result = run_distributed(
        kind="sft", config=config, base=base, reward=None, data=_demos(32), output_dir=work / "model",
        work_dir=work, reporter=reporter, num_processes=PROCESSES, timeout_s=TIMEOUT_S,
    )  # fmt: skip

    # a complete model, exactly one, and no partial or staging directory beside it
    assert result.output_dir == work / "model" and not result.is_adapter
    assert {"config.json", "model.safetensors", "training_config.json"} <= {
        p.name for p in result.output_dir.iterdir()
    }
    assert [p.name for p in work.iterdir() if p.is_dir()] == ["model"]
    # the metrics came through the parent's reporter, one per step, and the loss fell
    losses = reporter.series("loss/train")
    assert [s for s, m in reporter.history if "loss/train" in m] == list(range(1, max_steps + 1))
    assert losses[-1] < losses[0], losses
    assert result.metrics["loss/train"] == losses[-1]
    assert any("sft:" in line for line in reporter.lines)  # rank 0's own log lines arrived
    assert any("data parallel over 2 processes" in line for line in reporter.lines)
    saved = json.loads((result.output_dir / "training_config.json").read_text())
    assert saved["method"] == "sft"
    assert weights_changed(
        load_policy(base, load_tokenizer(base)).state_dict(),
        load_policy(ModelRef(str(result.output_dir)), load_tokenizer(base)),
    )


def test_ppo_in_two_processes(tmp_path: Path) -> None:
    policy, reward = _ppo_models(tmp_path)
    work = tmp_path / "work"
    reporter = PrintReporter()
    # global batch 8 = 4 prompts per rank; minibatch 4 = 2 per rank; 3 PPO steps
    config = PPOConfig(
        seed=0, learning_rate=1e-3, total_episodes=24, batch_size=8, mini_batch_size=4, ppo_epochs=2,
        response_length=6, max_length=48, kl_coef=0.05, missing_eos_penalty=0.0, bf16="off",
    )  # fmt: skip
    prompts = [{"messages": m} for m in make_prompts(16, seed=3)]

    result = run_distributed(
        kind="ppo", config=config.model_dump(), base=policy, reward=reward, data=prompts,
        output_dir=work / "model", work_dir=work, reporter=reporter, num_processes=PROCESSES,
        timeout_s=TIMEOUT_S,
    )  # fmt: skip

    assert [s for s, _ in reporter.history] == [1, 2, 3]
    # each rank raises when its own first ratio is off, so a finished run means both passed;
    # the reported value is their mean
    assert all(abs(r - 1) < 1e-3 for r in reporter.series("check/first_ratio"))
    kls = reporter.series("objective/kl")
    assert len(kls) == 3 and all(torch.isfinite(torch.tensor(kls)))
    assert any("processes 2" in line for line in reporter.lines)
    assert (result.output_dir / "ppo_config.json").exists()
    assert [p.name for p in work.iterdir() if p.is_dir()] == ["model"]
    tokenizer = load_tokenizer(policy)
    assert weights_changed(
        load_policy(policy, tokenizer).state_dict(), load_policy(ModelRef(str(result.output_dir)), tokenizer)
    )


def test_stop_file_cancels_every_rank(tmp_path: Path) -> None:
    base = ModelRef(str(make_tiny_causal_lm(tmp_path / "base", seed=0)))
    work = tmp_path / "work"
    reporter = StopAfter(1)
    max_steps = 400  # far more than happen before the STOP file is seen
    config = {"learning_rate": 1e-3, "batch_size": 2, "max_steps": max_steps, "max_length": 64, "seed": 0}

    with pytest.raises(Cancelled):
        run_distributed(
            kind="sft", config=config, base=base, reward=None, data=_demos(16),
            output_dir=work / "model", work_dir=work, reporter=reporter, num_processes=PROCESSES,
            timeout_s=TIMEOUT_S,
        )  # fmt: skip

    # the parent asked after step 1; all ranks stopped together at a later step boundary
    # (a rank left behind would block in the next all-reduce, and the launch would time out)
    assert (work / STOP_FILE).exists()
    assert 1 <= len(reporter.history) < max_steps
    assert any("cancelled at step" in line for line in reporter.lines)
    assert not (work / "model").exists()
    assert [p for p in work.iterdir() if p.is_dir()] == []


def test_runner_launches_only_when_more_than_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.models import RunKind
    from worker import runner
    from worker.training import launch

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(launch, "run_distributed", lambda **kw: calls.append(("launch", kw)) or "launched")
    monkeypatch.setattr(launch, "run_trainer", lambda **kw: calls.append(("here", kw)) or "here")
    job = runner.Job(run_id=1, kind=RunKind.sft, config={}, project_id=1, project_slug="p",
                     base=ModelRef("base"), base_model_id=None, data=[{"x": 1}])  # fmt: skip

    assert runner.train(job, tmp_path, PrintReporter(), processes=2) == "launched"  # type: ignore[arg-type]
    assert calls[-1][1]["num_processes"] == 2 and calls[-1][1]["output_dir"] == tmp_path / "model"
    assert runner.train(job, tmp_path, PrintReporter(), processes=1) == "here"  # type: ignore[arg-type]
    # 0 = every visible GPU; a CPU-only host runs in this process
    expected = "launch" if torch.cuda.device_count() > 1 else "here"
    runner.train(job, tmp_path, PrintReporter(), processes=0)  # type: ignore[arg-type]
    assert calls[-1][0] == expected
    assert launch.resolve_processes(0) == max(1, torch.cuda.device_count())
    assert launch.resolve_processes(3) == 3


def test_events_are_found_after_progress_bar_text() -> None:
    from worker.training.distributed import EVENT_PREFIX, parse_event

    assert parse_event("plain output") == ("plain output", None)
    text, event = parse_event(
        "Tokenizing: 100%|##| 12/12\r" + EVENT_PREFIX + '{"type": "log", "message": "hi"}'
    )
    assert text == "Tokenizing: 100%|##| 12/12\r" and event == {"type": "log", "message": "hi"}
    assert parse_event(EVENT_PREFIX + '{"type": "st')[1] is None  # torn JSON stays plain text
