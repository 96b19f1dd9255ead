"""PPO on tiny models whose right answer is known.

The oracle is "how many times the completion says banana". A tiny reward model learns it from
oracle-labelled pairs (a short Bradley-Terry loop), then PPO must make a random tiny policy say
banana more often, as the oracle (not the reward model) counts it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.schemas.training import PPOConfig
from tests.utils.tiny_models import WORDS, make_tiny_causal_lm
from worker.training.base import Cancelled, ModelRef, PrintReporter
from worker.training.models import load_policy, load_reward_model, load_tokenizer, save_atomically
from worker.training.ppo import (
    KLController,
    gae,
    kl_penalised_rewards,
    masked_whiten,
    penalise_missing_eos,
    per_token_scores,
    train_ppo,
    truncate_after_eos,
)

TARGET = "banana"
TOPICS = ["the sun", "a cat", "the sea", "my dog", "a tree", "the moon", "a bird", "the river"]
PROMPTS = [[{"role": "user", "content": f"tell me about {topic}"}] for topic in TOPICS]
RESPONSE_LENGTH = 8


# ---------------------------------------------------------------------------------------------
# Fixtures: a tiny policy and a tiny reward model trained on the oracle
# ---------------------------------------------------------------------------------------------


def _oracle(responses: torch.Tensor, mask: torch.Tensor, target_id: int) -> torch.Tensor:
    """Count of the target word in each completion (up to its first EOS): (B, T) -> (B,)."""
    return ((responses == target_id) & mask).sum(1).float()


def _train_reward_model(base_dir: Path, out_dir: Path, *, steps: int = 120, seed: int = 0) -> Path:
    """Bradley-Terry on pairs of random completions; the one with more bananas is chosen."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    ref = ModelRef(str(base_dir))
    tokenizer = load_tokenizer(ref)
    model = load_reward_model(ref, tokenizer)
    model.eval()  # no dropout in the tiny Llama anyway; eval keeps it explicit
    words = [w for w in WORDS if w != TARGET]
    eos = tokenizer.eos_token

    def completion(bananas: int) -> str:
        length = rng.randint(3, RESPONSE_LENGTH - 1)
        tokens = [rng.choice(words + ["<|im_start|>"]) for _ in range(length)]
        for _ in range(bananas):
            tokens[rng.randrange(length)] = TARGET
        if rng.random() < 0.5:
            tokens.append(eos)
        return " ".join(tokens)

    def render(prompt: list[dict], text: str) -> str:
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) + text

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(steps):
        chosen, rejected = [], []
        for _ in range(32):
            prompt = rng.choice(PROMPTS)
            low = rng.randint(0, 2)
            high = rng.randint(low + 1, 4)
            chosen.append(render(prompt, completion(high)))
            rejected.append(render(prompt, completion(low)))
        enc = tokenizer(chosen + rejected, add_special_tokens=False, padding=True, return_tensors="pt")
        scores = per_token_scores(model, enc.input_ids, enc.attention_mask)[:, -1]  # left-padded: last
        margin = scores[:32] - scores[32:]
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return save_atomically(model, tokenizer, out_dir)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run ~10x faster on one thread than on two when the CPUs are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tiny(root: Path) -> dict[str, Path]:
    """The tiny policy, and a tiny reward model trained on the oracle (also used by GPU checks)."""
    policy_dir = make_tiny_causal_lm(root / "policy", seed=0)
    reward_base = make_tiny_causal_lm(root / "reward-base", seed=1)
    reward_dir = _train_reward_model(reward_base, root / "reward")
    return {"policy": policy_dir, "reward": reward_dir, "root": root}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny(tmp_path_factory.mktemp("ppo"))


class StopAfter(PrintReporter):
    """Asks to stop once `steps` steps were reported."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len(self.history) >= self.steps


def _config(**overrides: object) -> PPOConfig:
    settings: dict[str, object] = dict(
        seed=0,
        learning_rate=1e-3,
        total_episodes=32 * 16,
        batch_size=32,
        mini_batch_size=8,
        ppo_epochs=4,
        response_length=RESPONSE_LENGTH,
        temperature=1.0,
        kl_coef=0.02,
        missing_eos_penalty=0.0,
        max_length=64,
    )
    settings.update(overrides)
    return PPOConfig(**settings)


@torch.no_grad()
def _banana_rate(model: torch.nn.Module, tokenizer, *, samples: int = 256, seed: int = 123) -> float:  # type: ignore[no-untyped-def]
    """Mean oracle score of `samples` completions (8 tokens, temperature 1) over the test prompts."""
    torch.manual_seed(seed)
    texts = [
        tokenizer.apply_chat_template(PROMPTS[i % len(PROMPTS)], add_generation_prompt=True, tokenize=False)
        for i in range(samples)
    ]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    model.eval()
    out = model.generate(
        **batch,
        max_new_tokens=RESPONSE_LENGTH,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    responses = out[:, batch.input_ids.shape[1] :]
    responses, mask, _ = truncate_after_eos(
        responses, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    target_id = tokenizer.convert_tokens_to_ids(TARGET)
    return _oracle(responses, mask, target_id).mean().item()


# ---------------------------------------------------------------------------------------------
# The math on hand-made tensors
# ---------------------------------------------------------------------------------------------


def test_truncate_after_eos_and_missing_eos_penalty() -> None:
    eos, pad = 9, 0
    responses = torch.tensor([[5, 9, 6, 9], [5, 6, 7, 8], [9, 4, 4, 4]])
    truncated, mask, has_eos = truncate_after_eos(responses, eos_token_id=eos, pad_token_id=pad)
    assert truncated.tolist() == [[5, 9, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]]
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert has_eos.tolist() == [True, False, True]
    scores = penalise_missing_eos(torch.tensor([2.0, 2.0, -1.0]), has_eos, 1.5)
    assert scores.tolist() == [2.0, 0.5, -1.0]


def test_kl_penalty_puts_score_on_the_final_real_token() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -3.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, non_score, kl = kl_penalised_rewards(
        logprobs, ref_logprobs, torch.tensor([10.0, 20.0]), mask, 0.1
    )
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, -1.0], [1.0, 2.0, 0.0]]))
    assert torch.allclose(non_score, torch.tensor([[-0.05, 0.0, 0.1], [-0.1, -0.2, 0.0]]))
    # the score lands on the last real token: index 2 for row 0, index 1 for row 1
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 10.1], [-0.1, 19.8, 0.0]]))


def test_gae_and_whitening_on_known_values() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: deltas (0, 0, 0.5) -> A2 = 0.5, A1 = 0 + 0.5 * 0.5, A0 = 0 + 0.5 * 0.25
    # row 1: ends after t=1, so V(t=2) and r(t=2) are ignored: deltas (0, 1) -> A = (0.5, 1, 0)
    assert torch.allclose(advantages, torch.tensor([[0.125, 0.25, 0.5], [0.5, 1.0, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[0.625, 0.75, 1.0], [1.5, 2.0, 0.0]]))
    gamma_half, _ = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    # row 0 with gamma 0.5, lambda 1: A2 = 0.5; A1 = (0 + 0.25 - 0.5) + 0.5 * 0.5; A0 = -0.25 + 0.5 * 0
    assert torch.allclose(gamma_half[0], torch.tensor([-0.25, 0.0, 0.5]))

    whitened = masked_whiten(advantages, mask)
    real = advantages[mask.bool()]  # 5 values
    expected = (real - real.mean()) / real.std(unbiased=True)
    assert torch.allclose(whitened[mask.bool()], expected, atol=1e-5)
    assert abs(masked_whiten(advantages, mask, shift_mean=False)[mask.bool()].mean().item() - 0.475) < 1e-5


def test_adaptive_kl_controller_moves_beta_toward_target() -> None:
    controller = KLController(_config(adaptive_kl=True, target_kl=6.0, kl_horizon=100, kl_coef=0.1))
    controller.update(12.0, 10)  # KL twice the target: error clipped to +0.2 -> beta * 1.02
    assert controller.value == pytest.approx(0.1 * 1.02)
    controller.update(3.0, 10)  # half the target: error -0.2 (clipped from -0.5)
    assert controller.value == pytest.approx(0.1 * 1.02 * 0.98)
    fixed = KLController(_config(kl_coef=0.1))
    fixed.update(100.0, 10)
    assert fixed.value == 0.1


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_ppo_raises_the_oracle_score(tiny: dict[str, Path], tmp_path: Path) -> None:
    check_ppo_raises_the_oracle_score(tiny, tmp_path, device="cpu", bf16="off")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ppo_on_cuda_in_bf16(tiny: dict[str, Path], tmp_path: Path) -> None:
    check_ppo_raises_the_oracle_score(tiny, tmp_path, device="cuda", bf16="auto")


def check_ppo_raises_the_oracle_score(
    tiny: dict[str, Path], tmp_path: Path, *, device: str, bf16: str
) -> None:
    ref = ModelRef(str(tiny["policy"]))
    tokenizer = load_tokenizer(ref)
    before_model = load_policy(ref, tokenizer)
    before = _banana_rate(before_model, tokenizer)

    reporter = PrintReporter()
    out = tmp_path / "ppo-out"
    result = train_ppo(
        config=_config(bf16=bf16),
        policy=ref,
        reward=ModelRef(str(tiny["reward"])),
        prompts=PROMPTS,
        output_dir=out,
        reporter=reporter,
        device=device,
    )
    assert result.output_dir == out and not result.is_adapter

    from transformers import AutoModelForCausalLM

    after_model = AutoModelForCausalLM.from_pretrained(out)
    after = _banana_rate(after_model, load_tokenizer(ModelRef(str(out))))
    assert after >= 2 * before and after - before >= 0.3, (before, after)

    changed = any(
        not torch.equal(p0, p1)
        for p0, p1 in zip(before_model.parameters(), after_model.parameters(), strict=True)
    )
    assert changed
    steps = len(reporter.history)
    assert steps == 16
    for name in (
        "objective/kl",
        "objective/entropy",
        "objective/scores",
        "objective/non_score_reward",
        "objective/rlhf_reward",
        "policy/clipfrac",
        "val/clipfrac",
        "policy/approxkl",
        "loss/policy",
        "loss/value",
        "val/ratio",
        "response/length",
        "response/eos_rate",
        "kl/beta",
        "check/first_ratio",
    ):
        assert len(reporter.series(name)) == steps, name
    assert all(abs(r - 1) < 1e-3 for r in reporter.series("check/first_ratio"))
    assert reporter.series("objective/kl")[-1] > 0
    scores = reporter.series("objective/scores")
    assert sum(scores[-4:]) / 4 > sum(scores[:4]) / 4  # the reward model's view agrees
    assert (out / "ppo_config.json").exists()


def test_ppo_with_lora_saves_only_the_adapter(tiny: dict[str, Path], tmp_path: Path) -> None:
    ref = ModelRef(str(tiny["policy"]))
    base_files = {p.name: p.read_bytes() for p in tiny["policy"].iterdir() if p.is_file()}
    reporter = PrintReporter()
    out = tmp_path / "ppo-lora"
    result = train_ppo(
        config=_config(lora_r=8, lora_alpha=16, learning_rate=2e-3, total_episodes=32 * 4),
        policy=ref,
        reward=ModelRef(str(tiny["reward"])),
        prompts=PROMPTS,
        output_dir=out,
        reporter=reporter,
    )
    assert result.is_adapter
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    # the base model on disk is untouched
    assert {p.name: p.read_bytes() for p in tiny["policy"].iterdir() if p.is_file()} == base_files
    assert all(abs(r - 1) < 1e-3 for r in reporter.series("check/first_ratio"))
    # the reference is the adapter switched off: KL starts at 0 (adapter B = 0) and then moves
    kls = reporter.series("objective/kl")
    assert abs(kls[0]) < 1e-4 and kls[-1] > 0

    tokenizer = load_tokenizer(ref)
    adapted = load_policy(ModelRef(str(out), is_adapter=True, base=ref), tokenizer, merge_adapters=False)
    base = load_policy(ref, tokenizer)
    ids = tokenizer(["<|im_start|> user tell me about the sun"], return_tensors="pt").input_ids
    with torch.no_grad():
        with_adapter = adapted(ids).logits
        with adapted.disable_adapter():
            without = adapted(ids).logits
        plain = base(ids).logits
    assert torch.allclose(without, plain, atol=1e-5)  # adapter off == the base (the reference)
    assert not torch.allclose(with_adapter, plain, atol=1e-4)  # the adapter learned something


def test_cancel_saves_nothing(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cancelled"
    reporter = StopAfter(1)
    with pytest.raises(Cancelled):
        train_ppo(
            config=_config(total_episodes=32 * 4),
            policy=ModelRef(str(tiny["policy"])),
            reward=ModelRef(str(tiny["reward"])),
            prompts=PROMPTS,
            output_dir=out,
            reporter=reporter,
        )
    assert len(reporter.history) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial or staging directory either


def test_existing_output_dir_is_refused_before_training(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    with pytest.raises(FileExistsError):
        train_ppo(
            config=_config(),
            policy=ModelRef(str(tiny["policy"])),
            reward=ModelRef(str(tiny["reward"])),
            prompts=PROMPTS,
            output_dir=out,
            reporter=PrintReporter(),
        )
