"""PPO for RLHF: a policy learns to please a reward model while a KL penalty keeps it near a reference.

TRL removed its PPOTrainer, so this is ours. It follows "The N+ Implementation Details of RLHF with
PPO" (Huang et al., 2024) and its reference code (vwxyzjn/summarize_from_feedback_details). Each
detail below is tied by its number to the line that does it (`# (5)`), as cleanrl does.

Implementation details:
 1. Dropout off in all models: every model stays in eval mode, and nn.Dropout p is set to 0, so the
    log-probs of the rollout and of the update come from the same function.
 2. Left padding with a real pad token (never EOS), and explicit attention masks and position ids,
    so a left-padded prompt followed by a right-padded response reads as one contiguous sequence.
 3. The reward is read at the last non-pad token of prompt + response.
 4. The value model is initialised from the reward model (a separate model; its score head, applied
    to every position, gives per-token values).
 5. Sampling temperature is applied again when log-probs are recomputed (logits / T), and sampling
    is pure (top_k 0, top_p 1), so the log-probs are those of the distribution that was sampled.
 6. Completions that never emit EOS get `missing_eos_penalty` subtracted from their score.
 7. Tokens after the first EOS are padding (truncated), masked out of every loss and statistic.
 8. Per-token reward: -beta * (logp - logp_ref) at every token, plus the RM score at the final token
    (the last real one; the reference code puts it one past the end, which is the same return).
 9. beta is fixed (`kl_coef`) or adapted toward `target_kl` by the controller of Ziegler et al.
    (2019): beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * batch_size / kl_horizon.
10. GAE with gamma and lambda (config.gamma, config.lam); values past the end are zero (bootstrap 0).
11. Advantages are whitened over the batch with the response mask (optionally rewards too, without
    shifting their mean).
12. Clipped policy loss (ratio clipped to 1 +- cliprange) and clipped value loss (values kept within
    cliprange_value of the rollout's), max of clipped and unclipped, masked means.
13. Several PPO epochs per batch (`ppo_epochs`), each over shuffled minibatches (`mini_batch_size`,
    split into `gradient_accumulation_steps` micro-batches).
14. On each batch's first epoch and first minibatch the policy has not moved, so the importance
    ratio must be 1: checked within 1e-3 (logged as `check/first_ratio`). The rollout's log-probs
    are recomputed by a forward pass in the same mode and micro-batch size as the update, so this
    holds under bf16 too.
15. Adam with eps 1e-5 and the learning rate annealed linearly to 0 over the PPO steps.
16. Mixed precision: bf16 autocast on CUDA (fp32 master weights; frozen models kept in bf16);
    fp32 on CPU unless `bf16` is "on". A policy trained in bf16 is stored in bf16.
17. With LoRA (lora_r > 0) the reference is the policy with its adapter disabled (one copy of the
    weights), the value model gets its own adapter (score head fully trained), and only the policy's
    adapter is saved.
18. Data parallelism (when started by launch.py in N processes): `batch_size` and
    `mini_batch_size` stay global; each rank takes its 1/N shard of the batch's prompts, generates
    and scores it, and averages its gradients with the other ranks before every optimizer step
    (distributed.all_reduce_gradients; generation and the frozen models stay unwrapped). Advantage
    whitening uses statistics over the whole global batch (11), beta adapts to the global KL so
    that it stays equal on all ranks (9), reported metrics are averaged over ranks, and rank 0
    alone saves. Each rank checks its own first ratio (14). In one process all of this is the
    identity.

Not done here: a shared base for the reward and value models (they are two copies today).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from app.models import RunPhase
from app.schemas.training import PPOConfig
from worker.training.base import Cancelled, ModelRef, Reporter, TrainResult
from worker.training.distributed import (
    all_reduce_gradients,
    all_reduce_mean,
    barrier,
    broadcast_parameters,
    check_same_on_all_ranks,
    is_main_process,
    rank,
    world_size,
)
from worker.training.models import (
    LoraSettings,
    load_policy,
    load_reward_model,
    load_tokenizer,
    save_atomically,
    storage_dtype,
)
from worker.training.ppo_math import (
    KLController,
    gae,
    kl_penalised_rewards,
    masked_mean,
    masked_whiten,
    penalise_missing_eos,
    truncate_after_eos,
)

RATIO_TOLERANCE = 1e-3  # (14) fp32 and bf16 both stay well inside this when nothing has moved


# ---------------------------------------------------------------------------------------------
# Model plumbing
# ---------------------------------------------------------------------------------------------


def disable_dropout(model: nn.Module) -> None:
    model.eval()  # (1) eval mode also turns off functional attention dropout
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # (1)


def position_ids_for(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, T) positions that start at 0 at the first real token (2)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def _unwrap(model: nn.Module) -> PreTrainedModel:
    """The transformers model itself, out of its PEFT wrapper when it has one."""
    get_base_model = getattr(model, "get_base_model", None)
    return cast(PreTrainedModel, get_base_model() if get_base_model is not None else model)


def per_token_scores(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The score head of a sequence classifier applied at every position: (B, T) -> (B, T)."""
    inner = _unwrap(model)
    backbone = getattr(inner, inner.base_model_prefix)
    head = cast(nn.Module, inner.score if hasattr(inner, "score") else inner.classifier)
    hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids_for(mask))
    return head(hidden.last_hidden_state).squeeze(-1).float()  # (B, T, H) -> (B, T)


def _accepts(model: nn.Module, name: str) -> bool:
    return name in inspect.signature(_unwrap(model).forward).parameters


def response_logits(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, context_length: int, temperature: float
) -> torch.Tensor:
    """Logits that predict each response token, divided by the temperature: (B, Tr, V)."""
    kwargs = {}
    response_length = ids.shape[1] - context_length
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = response_length + 1  # skip the prompt's logits (memory)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_for(mask), **kwargs).logits
    logits = logits[:, -response_length - 1 : -1].float()  # (B, Tr, V)
    return logits / (temperature + 1e-7)  # (5)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), tokens (B, T) -> (B, T)."""
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


@dataclass
class Rollout:
    """One batch of experience; every tensor is on the training device."""

    query_responses: torch.Tensor  # (B, Tq + Tr) left-padded prompt, right-padded response
    attention_mask: torch.Tensor  # (B, Tq + Tr)
    responses: torch.Tensor  # (B, Tr)
    response_mask: torch.Tensor  # (B, Tr) float, 1 up to and including the first EOS
    logprobs: torch.Tensor  # (B, Tr)
    values: torch.Tensor  # (B, Tr)
    advantages: torch.Tensor  # (B, Tr)
    returns: torch.Tensor  # (B, Tr)


def _autocast(device: torch.device, enabled: bool) -> AbstractContextManager[object]:
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def _use_bf16(config: PPOConfig, device: torch.device) -> bool:
    if config.bf16 == "on":
        return True
    if config.bf16 == "off":
        return False
    return device.type == "cuda" and torch.cuda.is_bf16_supported()  # (16)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


def train_ppo(
    *,
    config: PPOConfig,
    policy: ModelRef,
    reward: ModelRef,
    prompts: list[list[dict]],
    output_dir: Path,
    reporter: Reporter,
    device: str | None = None,
) -> TrainResult:
    """Train `policy` with PPO against `reward` on chat `prompts`; save to `output_dir` at the end."""
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} exists already")
    # Derived values, computed and checked in one place.
    num_steps = config.total_episodes // config.batch_size
    if num_steps < 1:
        raise ValueError("total_episodes must be at least batch_size")
    # (18) batch_size and mini_batch_size are global; each rank works on its 1/N of them
    ranks, this_rank = world_size(), rank()
    if config.batch_size % ranks:
        raise ValueError(f"batch_size must be a multiple of the number of processes ({ranks})")
    if config.mini_batch_size % (config.gradient_accumulation_steps * ranks):
        raise ValueError(
            f"mini_batch_size must be a multiple of gradient_accumulation_steps x processes ({ranks})"
        )
    local_batch_size = config.batch_size // ranks
    local_mini_batch_size = config.mini_batch_size // ranks
    micro_batch_size = local_mini_batch_size // config.gradient_accumulation_steps
    max_prompt_tokens = config.max_length - config.response_length
    if max_prompt_tokens < 1:
        raise ValueError("max_length must exceed response_length")

    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    if default_device == "cuda" and ranks > 1:
        default_device = f"cuda:{torch.cuda.current_device()}"  # this rank's GPU (18)
    dev = torch.device(device or default_device)
    amp = _use_bf16(config, dev)
    frozen_dtype = torch.bfloat16 if amp and dev.type == "cuda" else torch.float32  # (16)
    torch.manual_seed(config.seed)  # initialisation, minibatch order and sampling
    prompt_rng = random.Random(config.seed)  # prompt order
    lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=0.0)  # (1) no LoRA dropout
    if config.lora_dropout:
        reporter.log("lora_dropout is ignored: PPO keeps dropout off in every model")

    # 1. Models: policy, reference, reward, value.
    tokenizer = load_tokenizer(policy)  # (2) left padding, a real pad token
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert pad_id is not None and pad_id != eos_id, "padding needs a real pad token"  # (2)
    # transformers declares `PreTrainedModel.to` through functools.wraps, whose stub mypy reads as
    # an unbound function wanting the model first: hence the arg-type ignores on `.to(dev)` below.
    policy_model = load_policy(policy, tokenizer).to(dev)  # type: ignore[arg-type]  # fp32 master weights (16)
    ref_model: PreTrainedModel | None = None
    if lora.enabled:
        from peft import get_peft_model

        policy_model = get_peft_model(policy_model, lora.peft_config("CAUSAL_LM"))  # (17)
    else:
        ref_model = load_policy(policy, tokenizer, dtype=frozen_dtype).to(dev)  # type: ignore[arg-type]
        ref_model.requires_grad_(False)
    reward_model = load_reward_model(reward, tokenizer, dtype=frozen_dtype).to(dev)  # type: ignore[arg-type]
    reward_model.requires_grad_(False)
    value_model = load_reward_model(reward, tokenizer).to(dev)  # type: ignore[arg-type]  # (4) trained, fp32
    if lora.enabled:
        from peft import get_peft_model

        value_model = get_peft_model(value_model, lora.peft_config("SEQ_CLS"))  # head fully trained
    reporter.phase(RunPhase.preparing)
    for model in (policy_model, ref_model, reward_model, value_model):
        if model is not None:
            disable_dropout(model)  # (1)

    generation_owner = _unwrap(policy_model)
    saved_generation_config = generation_owner.generation_config
    generation_owner.generation_config = GenerationConfig(
        max_new_tokens=config.response_length,
        do_sample=True,
        temperature=config.temperature,
        top_k=0,  # (5) pure sampling: the recomputed log-probs are those of the sampler
        top_p=1.0,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )

    trainable = [p for m in (policy_model, value_model) for p in m.parameters() if p.requires_grad]
    if ranks > 1:
        broadcast_parameters(trainable)  # (18) equal already (same seed and weights); made sure
        torch.manual_seed(config.seed + this_rank)  # (18) each rank samples its own completions
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, eps=1e-5, weight_decay=0.0)  # (15)
    kl_control = KLController(config)

    # 2. Prompts: rendered with the chat template, too-long ones dropped.
    texts = [
        cast(str, tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False))  # one text
        for m in prompts
    ]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    texts = [t for t, n in zip(texts, lengths, strict=True) if n <= max_prompt_tokens]
    if len(texts) < len(lengths):
        reporter.log(f"dropped {len(lengths) - len(texts)} prompts longer than {max_prompt_tokens} tokens")
    if not texts:
        raise ValueError("no prompt fits in max_length - response_length tokens")
    order: list[int] = []

    def next_prompts() -> list[str]:
        while len(order) < config.batch_size:  # reshuffle each pass over the prompts
            order.extend(prompt_rng.sample(range(len(texts)), len(texts)))
        picked = [texts[order.pop(0)] for _ in range(config.batch_size)]
        # (18) every rank draws the same global batch (same prompt_rng) and keeps its shard
        return picked[this_rank * local_batch_size : (this_rank + 1) * local_batch_size]

    reporter.log(
        f"PPO: {num_steps} steps of {config.batch_size} prompts, {config.ppo_epochs} epochs, "
        f"device {dev}, bf16 {amp}, lora_r {config.lora_r}, processes {ranks}"
    )
    metrics: dict[str, float] = {}
    for step in range(1, num_steps + 1):
        if reporter.should_stop():
            raise Cancelled(f"cancelled before PPO step {step}")
        for group in optimizer.param_groups:  # (15) linear annealing
            group["lr"] = config.learning_rate * (1.0 - (step - 1) / num_steps)
        beta = kl_control.value

        # 3. Rollout: generate, then score with every model.
        t0 = time.perf_counter()
        batch = tokenizer(next_prompts(), add_special_tokens=False, padding=True, return_tensors="pt").to(dev)
        context_length = batch.input_ids.shape[1]  # Tq
        with torch.no_grad(), _autocast(dev, amp):
            generated = policy_model.generate(**batch)  # (B, Tq + Tr')
        responses = generated[:, context_length:]  # (B, Tr') may stop early when all ended
        responses, response_mask, has_eos = truncate_after_eos(
            responses, eos_token_id=eos_id, pad_token_id=pad_id
        )  # (7)
        query_responses = torch.cat([batch.input_ids, responses], dim=1)  # (B, Tq + Tr)
        attention_mask = torch.cat([batch.attention_mask, response_mask.long()], dim=1)  # (B, Tq + Tr) (2)
        _sync(dev)
        t1 = time.perf_counter()

        logprob_parts: list[torch.Tensor] = []
        ref_logprob_parts: list[torch.Tensor] = []
        value_parts: list[torch.Tensor] = []
        score_parts: list[torch.Tensor] = []
        last_token = batch.attention_mask.shape[1] + response_mask.long().sum(1) - 1  # (B,) (3)
        with torch.no_grad(), _autocast(dev, amp):
            for i in range(0, local_batch_size, micro_batch_size):  # (14) same shapes as the update
                rows = slice(i, i + micro_batch_size)
                ids, mask, tokens = query_responses[rows], attention_mask[rows], responses[rows]

                def logits_of(model: nn.Module) -> torch.Tensor:
                    return response_logits(model, ids, mask, context_length, config.temperature)  # noqa: B023

                logprob_parts.append(token_logprobs(logits_of(policy_model), tokens))  # (b, Tr)
                if ref_model is None:
                    with policy_model.disable_adapter():  # (17) reference = adapter off
                        ref_logprob_parts.append(token_logprobs(logits_of(policy_model), tokens))  # (5)
                else:
                    ref_logprob_parts.append(token_logprobs(logits_of(ref_model), tokens))  # (b, Tr) (5)
                # (4) per-token values: V(prefix up to t-1) predicts the return from token t on
                value_parts.append(per_token_scores(value_model, ids, mask)[:, context_length - 1 : -1])
                rm = per_token_scores(reward_model, ids, mask)  # (b, Tq + Tr)
                score_parts.append(rm[torch.arange(ids.shape[0], device=dev), last_token[rows]])  # (b,) (3)
        mask_f = response_mask.float()  # (B, Tr)
        logprobs = torch.cat(logprob_parts) * mask_f  # (B, Tr)
        ref_logprobs = torch.cat(ref_logprob_parts) * mask_f  # (B, Tr)
        values = torch.cat(value_parts) * mask_f  # (B, Tr)
        raw_scores = torch.cat(score_parts)  # (B,)
        scores = penalise_missing_eos(raw_scores, has_eos, config.missing_eos_penalty)  # (6)

        # 4. Rewards and advantages.
        rewards, non_score_reward, kl = kl_penalised_rewards(
            logprobs, ref_logprobs, scores, mask_f, beta
        )  # (8)
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask_f, shift_mean=False, across_ranks=True) * mask_f  # (11)
        advantages, returns = gae(rewards, values, mask_f, gamma=config.gamma, lam=config.lam)  # (10)
        advantages = masked_whiten(advantages, mask_f, across_ranks=True) * mask_f  # (11) (18)
        rollout = Rollout(
            query_responses, attention_mask, responses, mask_f, logprobs, values, advantages, returns
        )
        _sync(dev)
        t2 = time.perf_counter()

        # 5. PPO epochs over minibatches.
        stats = _ppo_update(
            config, rollout, policy_model, value_model, optimizer, context_length,
            local_mini_batch_size, micro_batch_size, dev, amp,
        )  # fmt: skip
        _sync(dev)
        t3 = time.perf_counter()

        # 6. Metrics, averaged over ranks (18); then adapt beta from this batch's KL.
        mean_kl = kl.sum(1).mean().item()
        mean_non_score = non_score_reward.sum(1).mean().item()
        metrics = {
            "objective/kl": mean_kl,
            "objective/entropy": (-logprobs).sum(1).mean().item(),  # sampled estimate, nats/sequence
            "objective/scores": scores.mean().item(),
            "objective/scores_raw": raw_scores.mean().item(),
            "objective/non_score_reward": mean_non_score,
            "objective/rlhf_reward": scores.mean().item() + mean_non_score,
            "response/length": mask_f.sum(1).mean().item(),
            "response/eos_rate": has_eos.float().mean().item(),
            "response/width": float(responses.shape[1]),  # decode steps taken by generate
            "kl/beta": beta,
            "lr": optimizer.param_groups[0]["lr"],
            "time/generation": t1 - t0,
            "time/scoring": t2 - t1,
            "time/update": t3 - t2,
            **stats,
        }
        metrics = all_reduce_mean(metrics)  # (18) equal shards: the mean of means is the mean
        kl_control.update(metrics["objective/kl"], config.batch_size)  # (9) the global KL (18)
        reporter.step(step, num_steps, metrics)

    if reporter.should_stop():
        raise Cancelled("cancelled before saving")
    # (18) rank 0 saves its copy for all: make sure the copies did not drift apart
    check_same_on_all_ranks(sum(p.detach().double().sum().item() for p in trainable), "trained weights")
    # 7. Save once, atomically, with the resolved config beside the weights.
    generation_owner.generation_config = saved_generation_config
    if is_main_process():  # (18) every rank holds the same weights; one writes them
        _save_with_config(policy_model, tokenizer, output_dir, config, dtype=storage_dtype(amp))
    barrier()  # no rank returns before the directory is complete
    return TrainResult(output_dir=output_dir, is_adapter=lora.enabled, metrics=metrics)


def _ppo_update(
    config: PPOConfig,
    rollout: Rollout,
    policy_model: nn.Module,
    value_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    context_length: int,
    mini_batch_size: int,
    micro_batch_size: int,
    dev: torch.device,
    amp: bool,
) -> dict[str, float]:
    sums: dict[str, float] = {}
    count = 0
    first_ratio = float("nan")
    batch_size = rollout.responses.shape[0]
    for epoch in range(config.ppo_epochs):  # (13)
        permutation = torch.randperm(batch_size, device=dev)
        for start in range(0, batch_size, mini_batch_size):
            minibatch = permutation[start : start + mini_batch_size]
            for micro_start in range(0, mini_batch_size, micro_batch_size):
                idx = minibatch[micro_start : micro_start + micro_batch_size]
                ids, mask = rollout.query_responses[idx], rollout.attention_mask[idx]  # (b, Tq + Tr)
                tokens, m = rollout.responses[idx], rollout.response_mask[idx]  # (b, Tr)
                old_logprobs, old_values = rollout.logprobs[idx], rollout.values[idx]
                advantages, returns = rollout.advantages[idx], rollout.returns[idx]
                with _autocast(dev, amp):
                    logits = response_logits(policy_model, ids, mask, context_length, config.temperature)
                    vpred = per_token_scores(value_model, ids, mask)[:, context_length - 1 : -1]  # (b, Tr)
                new_logprobs = token_logprobs(logits, tokens) * m  # (b, Tr)

                # (12) clipped value loss
                vpred_clipped = torch.clamp(
                    vpred, old_values - config.cliprange_value, old_values + config.cliprange_value
                )
                vf_losses1 = (vpred - returns) ** 2
                vf_losses2 = (vpred_clipped - returns) ** 2
                vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), m)
                vf_clipfrac = masked_mean((vf_losses2 > vf_losses1).float(), m)

                # (12) clipped policy loss
                log_ratio = new_logprobs - old_logprobs  # (b, Tr), 0 past the end
                ratio = torch.exp(log_ratio)
                pg_losses1 = -advantages * ratio
                pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - config.cliprange, 1.0 + config.cliprange)
                pg_loss = masked_mean(torch.max(pg_losses1, pg_losses2), m)
                pg_clipfrac = masked_mean((pg_losses2 > pg_losses1).float(), m)

                loss = (pg_loss + config.vf_coef * vf_loss) / config.gradient_accumulation_steps
                loss.backward()

                with torch.no_grad():
                    if epoch == 0 and start == 0 and micro_start == 0:  # (14)
                        first_ratio = masked_mean(ratio, m).item()
                        if abs(first_ratio - 1.0) > RATIO_TOLERANCE:
                            raise RuntimeError(
                                f"first PPO ratio is {first_ratio:.6f}, not 1: rollout and update "
                                "log-probs disagree (dropout, temperature or padding mismatch?)"
                            )
                    probs = F.softmax(logits, dim=-1)  # (b, Tr, V)
                    entropy = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)  # (b, Tr)
                    step_stats = {
                        "loss/policy": pg_loss.item(),
                        "loss/value": vf_loss.item(),
                        "policy/clipfrac": pg_clipfrac.item(),
                        "val/clipfrac": vf_clipfrac.item(),
                        "policy/approxkl": 0.5 * masked_mean(log_ratio**2, m).item(),
                        "policy/entropy": masked_mean(entropy, m).item(),
                        "val/ratio": masked_mean(ratio, m).item(),
                        "val/vpred": masked_mean(vpred, m).item(),
                    }
                for key, value in step_stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            # (18) the gradient of the global minibatch: every rank's, averaged
            all_reduce_gradients([p for group in optimizer.param_groups for p in group["params"]])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    stats = {key: total / count for key, total in sums.items()}
    stats["check/first_ratio"] = first_ratio
    return stats


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _save_with_config(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    config: PPOConfig,
    *,
    dtype: torch.dtype,
) -> None:
    """save_atomically into a staging directory, add the resolved config, then rename into place."""
    staging = output_dir.parent / f".{output_dir.name}.staged-{uuid.uuid4().hex[:8]}"
    try:
        save_atomically(model, tokenizer, staging, dtype=dtype)  # type: ignore[arg-type]
        (staging / "ppo_config.json").write_text(json.dumps(config.model_dump(), indent=2))
        os.replace(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "KLController",
    "gae",
    "kl_penalised_rewards",
    "masked_whiten",
    "penalise_missing_eos",
    "train_ppo",
    "truncate_after_eos",
]
