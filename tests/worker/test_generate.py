"""Sampling completions from a tiny policy: shapes, reproducibility, EOS handling, cancelling."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from app.schemas.training import GenerateConfig  # noqa: E402
from tests.utils.tiny_models import make_forced_causal_lm, make_tiny_causal_lm  # noqa: E402
from worker.training.base import Cancelled, ModelRef, PrintReporter  # noqa: E402
from worker.training.generate import generate_completions, sampling_settings  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "tell me about the sun"}],
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "be very good"},
        {"role": "user", "content": "what is a cat"},
        {"role": "assistant", "content": "a small animal"},
        {"role": "user", "content": "why"},
    ],
]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> ModelRef:
    return ModelRef(str(make_tiny_causal_lm(tmp_path_factory.mktemp("policy"))))


def _forced_model(path: Path, token: str) -> ModelRef:
    """A tiny model that always says `token` (tests/utils/tiny_models.py)."""
    return ModelRef(str(make_forced_causal_lm(path, token)))


def _config(**fields: object) -> GenerateConfig:
    values: dict[str, object] = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0, "batch_size": 2}
    values.update(fields)
    return GenerateConfig(**values)  # type: ignore[arg-type]


def test_shapes_and_metrics(tiny_policy: ModelRef) -> None:
    reporter = PrintReporter()
    out = generate_completions(
        policy=tiny_policy, prompts=PROMPTS, config=_config(), reporter=reporter, num_samples=3
    )
    assert len(out) == 3 and all(len(samples) == 3 for samples in out)
    assert all(isinstance(text, str) and text == text.strip() for s in out for text in s)
    # Decoded text is the answer only: no prompt, no special tokens.
    for samples in out:
        for text in samples:
            assert "<|im_start|>" not in text and "<pad>" not in text and "<|im_end|>" not in text
            assert len(text.split()) <= 8
    assert [step for step, _ in reporter.history] == [1, 2]  # 3 prompts in batches of 2
    for name in ("generate/tokens_per_s", "generate/mean_length", "generate/eos_rate"):
        assert len(reporter.series(name)) == 2
    assert all(0 < length <= 8 for length in reporter.series("generate/mean_length"))
    assert all(0 <= rate <= 1 for rate in reporter.series("generate/eos_rate"))
    # Sampling gives different answers to the same prompt (a random model over ~170 words).
    assert len(set(out[0])) > 1


def test_seed_makes_runs_reproducible(tiny_policy: ModelRef) -> None:
    def run(seed: int) -> list[list[str]]:
        return generate_completions(
            policy=tiny_policy, prompts=PROMPTS, config=_config(seed=seed), reporter=PrintReporter()
        )

    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_greedy_is_deterministic_without_a_seed(tiny_policy: ModelRef) -> None:
    outs = [
        generate_completions(
            policy=tiny_policy,
            prompts=PROMPTS[:2],
            config=_config(temperature=0, seed=seed),
            reporter=PrintReporter(),
        )
        for seed in (1, 2)
    ]
    assert outs[0] == outs[1]
    assert all(samples[0] == samples[1] for samples in outs[0])


def test_eos_ends_the_completion(tmp_path: Path) -> None:
    reporter = PrintReporter()
    out = generate_completions(
        policy=_forced_model(tmp_path / "eos", "<|im_end|>"),
        prompts=PROMPTS,
        config=_config(max_new_tokens=6),
        reporter=reporter,
    )
    assert out == [["", ""]] * 3
    assert reporter.series("generate/eos_rate") == [1.0, 1.0]
    assert reporter.series("generate/mean_length") == [1.0, 1.0]


def test_completion_without_eos_runs_to_max_new_tokens(tmp_path: Path) -> None:
    reporter = PrintReporter()
    out = generate_completions(
        policy=_forced_model(tmp_path / "banana", "banana"),
        prompts=PROMPTS,
        config=_config(max_new_tokens=5, temperature=0),
        reporter=reporter,
    )
    assert out == [["banana banana banana banana banana"] * 2] * 3
    assert reporter.series("generate/eos_rate") == [0.0, 0.0]
    assert reporter.series("generate/mean_length") == [5.0, 5.0]


class _StopAfter(PrintReporter):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.history) >= self.steps


def test_cancel_stops_between_batches(tiny_policy: ModelRef) -> None:
    reporter = _StopAfter(1)
    with pytest.raises(Cancelled):
        generate_completions(
            policy=tiny_policy, prompts=PROMPTS, config=_config(batch_size=1), reporter=reporter
        )
    assert len(reporter.history) == 1
    with pytest.raises(Cancelled):
        generate_completions(policy=tiny_policy, prompts=PROMPTS, config=_config(), reporter=_StopAfter(0))


def test_sampling_settings_are_the_provenance() -> None:
    config = _config(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3)
    assert sampling_settings(config) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 64,
        "seed": 3,
    }


def test_no_prompts(tiny_policy: ModelRef) -> None:
    assert (
        generate_completions(policy=tiny_policy, prompts=[], config=_config(), reporter=PrintReporter()) == []
    )
