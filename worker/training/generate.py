"""Sampling completions from a policy: the step that turns a model version into new pairs.

`generate_completions` answers each prompt (a chat, a list of `{"role", "content"}` dicts)
`num_samples` times. Prompts go through the tokenizer's chat template with the generation prompt
added, are left-padded with the real pad token (models.load_tokenizer), and sampled in batches of
`config.batch_size` prompts. Only the new tokens are decoded, special tokens skipped.

Reproducibility: each batch is sampled after seeding torch with `config.seed + batch index`, so
the same model, prompts and config give the same completions (on the same hardware and dtype);
a different `batch_size` gives different, equally valid samples. Temperature 0 means greedy
decoding (then every sample of a prompt is the same text).

`sampling_settings(config)` is the provenance dict stored with every completion.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from app.schemas.training import GenerateConfig
from worker.training.base import Cancelled, ModelRef, Reporter
from worker.training.models import best_dtype, load_policy, load_tokenizer


def sampling_settings(config: GenerateConfig) -> dict[str, Any]:
    """What produced a completion, stored beside it (with the model version) for provenance."""
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
        "seed": config.seed,
    }


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    """Every token that ends a completion: the tokenizer's EOS and the model's own (chat
    models often end turns with a token other than the tokenizer's EOS)."""
    ids: list[int] = []
    candidates: list[Any] = [tokenizer.eos_token_id]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        candidates.append(generation_config.eos_token_id)
    for candidate in candidates:
        for token_id in candidate if isinstance(candidate, list | tuple) else [candidate]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    if not ids:
        raise ValueError("the tokenizer has no EOS token: completions would never end")
    return ids


def _chat_texts(tokenizer: Any, prompts: list[list[dict]]) -> list[str]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "the policy's tokenizer has no chat template; generation needs one to format prompts"
        )
    return [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in prompts
    ]


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def generate_completions(
    *,
    policy: ModelRef,
    prompts: list[list[dict]],
    config: GenerateConfig,
    reporter: Reporter,
    num_samples: int = 2,
    device: torch.device | str | None = None,
) -> list[list[str]]:
    """`num_samples` completions for each prompt, in prompt order: result[i][j] is sample j of
    prompt i. Raises `Cancelled` when the reporter says to stop (checked before every batch)."""
    if num_samples < 1:
        raise ValueError("num_samples must be at least 1")
    if not prompts:
        return []
    if reporter.should_stop():
        raise Cancelled()

    device = _resolve_device(device)
    tokenizer = load_tokenizer(policy)
    model = load_policy(policy, tokenizer, dtype=best_dtype(device))
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    eos_ids = _eos_ids(tokenizer, model)
    texts = _chat_texts(tokenizer, prompts)

    greedy = config.temperature == 0
    sampling: dict[str, Any] = (
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if greedy
        else {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p, "top_k": 0}
    )
    if greedy and num_samples > 1:
        reporter.log(f"temperature 0 (greedy): the {num_samples} samples of each prompt are equal")

    batch_size = config.batch_size
    total = (len(texts) + batch_size - 1) // batch_size
    reporter.log(
        f"generating {num_samples} x {len(texts)} completions in {total} batches on {device} "
        f"({'greedy' if greedy else f'temperature {config.temperature}, top_p {config.top_p}'}, "
        f"max {config.max_new_tokens} new tokens)"
    )
    results: list[list[str]] = []
    eos = torch.tensor(eos_ids, device=device)
    for index in range(total):
        if index and reporter.should_stop():
            raise Cancelled()
        batch = texts[index * batch_size : (index + 1) * batch_size]
        # Each prompt repeated num_samples times, side by side: rows i*n .. i*n+n-1.
        repeated = [text for text in batch for _ in range(num_samples)]
        encoded = tokenizer(repeated, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        prompt_length = encoded["input_ids"].shape[1]

        torch.manual_seed(config.seed + index)  # seeds CUDA too
        started = time.perf_counter()
        output = model.generate(  # type: ignore[operator]
            **encoded,
            max_new_tokens=config.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_ids,
            **sampling,
        )
        elapsed = max(time.perf_counter() - started, 1e-9)

        new_tokens = output[:, prompt_length:]
        ended = torch.isin(new_tokens, eos)
        has_eos = ended.any(dim=1)
        # Length up to and including the first EOS; the full width for completions that never end.
        first_eos = torch.where(has_eos, ended.int().argmax(dim=1) + 1, new_tokens.shape[1])
        decoded = tokenizer.batch_decode(_cut_at_eos(new_tokens, first_eos), skip_special_tokens=True)
        decoded = [text.strip() for text in decoded]
        for i in range(len(batch)):
            results.append(decoded[i * num_samples : (i + 1) * num_samples])

        generated = float(first_eos.sum().item())
        reporter.step(
            index + 1,
            total,
            {
                "generate/tokens_per_s": generated / elapsed,
                "generate/mean_length": generated / len(repeated),
                "generate/eos_rate": float(has_eos.float().mean().item()),
            },
        )
    return results


def _cut_at_eos(new_tokens: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Each row's tokens up to its first EOS: nothing after the end of a completion is text."""
    return [row[: int(length)].tolist() for row, length in zip(new_tokens, lengths, strict=True)]


def oversample(
    *,
    policy: ModelRef,
    scorer: ModelRef | None,
    prompts: list[list[dict]],
    config: GenerateConfig,
    reporter: Reporter,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """`config.samples_per_prompt` completions per prompt, and the pair(s) raters are sent.

    Each prompt keeps its distinct non-empty texts (in sampling order). With a `scorer` (a reward
    model) each text is scored and the `pairs_per_prompt` pairs with the smallest reward margin
    are picked (worker/training/score.py), each with the predicted preference, uncertainty and
    priority a score run would give it; without one the pairs are picked at random (seeded by
    the config's seed) and carry no scores. Either way each pair's sides are put in a random
    order. Result: `{"oversampled": [{"texts", "rewards", "pairs": [{"a", "b", scores...}]}],
    "sampling", "picked_by"}`, one entry per prompt (indices into its texts)."""
    import random

    from worker.training.score import completion_rewards, informative_pairs, pair_score

    samples = generate_completions(
        policy=policy, prompts=prompts, config=config, reporter=reporter,
        num_samples=config.samples_per_prompt, device=device,
    )  # fmt: skip
    kept = [list(dict.fromkeys(text for text in texts if text.strip())) for texts in samples]
    rng = random.Random(config.seed)
    if scorer is None:
        reporter.log(
            f"no reward model given (scorer_model_id): {config.pairs_per_prompt} pair(s) per prompt "
            f"picked at random among the {config.samples_per_prompt} samples, unscored"
        )
        rewards: list[list[float] | None] = [None] * len(kept)
    else:
        scored = completion_rewards(
            reward=scorer, prompts=prompts, completions=kept, reporter=reporter,
            batch_size=config.batch_size, device=str(device) if device is not None else None,
        )  # fmt: skip
        rewards = list(scored)
        reporter.log(
            f"scored {sum(len(t) for t in kept)} completions with the reward model; "
            f"{config.pairs_per_prompt} pair(s) per prompt by the smallest reward margin"
        )
    results = []
    for texts, scores in zip(kept, rewards, strict=True):
        if scores is None:
            every = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))]
            chosen = rng.sample(every, min(config.pairs_per_prompt, len(every)))
        else:
            chosen = informative_pairs(scores, config.pairs_per_prompt)
        pairs = []
        for i, j in chosen:
            a, b = (j, i) if rng.random() < 0.5 else (i, j)
            pairs.append({"a": a, "b": b, **(pair_score(scores[a], scores[b]) if scores is not None else {})})
        results.append({"texts": texts, "rewards": scores, "pairs": pairs})
    return {
        "oversampled": results,
        "sampling": sampling_settings(config),
        "picked_by": "random" if scorer is None else "reward",
    }
