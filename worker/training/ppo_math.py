"""The arithmetic of PPO on plain tensors, unit-tested on hand-made values: masked whitening,
EOS truncation, KL-penalised rewards, GAE and the KL controller. Numbers in parentheses are the
implementation details listed in worker/training/ppo.py."""

from __future__ import annotations

import torch

from app.schemas.training import PPOConfig
from worker.training.distributed import all_reduce_sum


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True, across_ranks: bool = False
) -> torch.Tensor:
    """(values - mean) / std over the masked entries; with shift_mean False the mean is kept.

    With `across_ranks` the mean and variance are those of every rank's entries together (18), as
    if the global batch were whitened in one process; the same arithmetic alone.
    """
    reduce = all_reduce_sum if across_ranks else _identity
    n = reduce(mask.sum())
    mean = reduce((values * mask).sum()) / n.clamp(min=1)
    var = reduce(((values - mean) ** 2 * mask).sum()) / n.clamp(min=1) * n / (n - 1).clamp(min=1)  # unbiased
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def truncate_after_eos(
    responses: torch.Tensor, *, eos_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad everything after the first EOS. Returns (responses, mask, has_eos).

    responses (B, T) -> truncated (B, T), mask (B, T) true up to and including the first EOS,
    has_eos (B,).
    """
    is_eos = responses == eos_token_id  # (B, T)
    eos_seen_before = (is_eos.long().cumsum(1) - is_eos.long()) > 0  # (B, T) an EOS came earlier
    mask = ~eos_seen_before  # (B, T) (7) the EOS itself is kept as the final token
    truncated = responses.masked_fill(~mask, pad_token_id)  # (B, T)
    return truncated, mask, is_eos.any(1)


def penalise_missing_eos(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float) -> torch.Tensor:
    """scores (B,) minus `penalty` where the completion never ended."""
    return scores - penalty * (~has_eos).to(scores.dtype)  # (6)


def kl_penalised_rewards(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, T): -beta * kl everywhere, plus the score at the last real token.

    Returns (rewards, non_score_reward, kl), all (B, T) and zero past the end.
    """
    kl = (logprobs - ref_logprobs) * mask  # (B, T)
    non_score_reward = -beta * kl  # (B, T) (8)
    last = mask.long().sum(1) - 1  # (B,) index of the final real token
    rewards = non_score_reward.clone()
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores  # (8)
    return rewards, non_score_reward, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (10). rewards, values, mask (B, T) -> advantages, returns."""
    rewards, values = rewards * mask, values * mask  # past the end: no reward, value 0 (bootstrap 0)
    T = rewards.shape[1]
    last_gae = torch.zeros_like(rewards[:, 0])  # (B,)
    reversed_advantages = []
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t < T - 1 else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        last_gae = delta + gamma * lam * last_gae
        reversed_advantages.append(last_gae)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)  # (B, T)
    returns = advantages + values  # (B, T)
    return advantages * mask, returns * mask


class KLController:
    """beta of the KL penalty: fixed, or adaptive as in Ziegler et al. (2019) (9)."""

    def __init__(self, config: PPOConfig) -> None:
        self.value = config.kl_coef
        self.adaptive = config.adaptive_kl
        self.target = config.target_kl
        self.horizon = config.kl_horizon

    def update(self, current_kl: float, n_episodes: int) -> None:
        if not self.adaptive:
            return
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)  # (9) proportional, clipped
        self.value *= 1 + error * n_episodes / self.horizon
