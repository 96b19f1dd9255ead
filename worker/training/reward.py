"""Reward model from preference pairs, with TRL's RewardTrainer.

A pair is `{"prompt_id": int, "messages": [...], "chosen": str, "rejected": str, "margin": float}`
(`margin` optional). It becomes TRL's conversational preference format with an explicit prompt:

    {"prompt": messages, "chosen": [assistant turn], "rejected": [assistant turn], "margin": m}

TRL renders prompt+chosen and prompt+rejected with the chat template and trains a sequence
classifier with one output on the Bradley-Terry loss `-log sigmoid(r_chosen - r_rejected - m)`
(the margin term only with `use_margin`), plus `center_rewards_coefficient * mean(r^2)` when set.

Hazards:
* Whole prompts are held out (`split_by_prompt`): pairs of one prompt share most of their tokens,
  so a pair-level split would measure memorisation, not generalisation.
* The reward is read at the last non-pad token, so `config.pad_token_id` must be a real pad token
  (`load_tokenizer` guarantees one distinct from EOS); TRL pads on the right here.
* TRL's own `eval_accuracy` averages per-batch accuracies (a short last batch weighs as much as a
  full one); `eval/accuracy` here is the exact share of held-out pairs with r_chosen > r_rejected.
* The score head is initialised randomly: seed before loading.
* Pairs implied by one ranking share a ``group`` key (worker/data.py). With
  ``ranking_batching = per_prompt`` a batch holds ``batch_size`` whole groups and the loss is
  averaged over each group's pairs (`worker.training.ranking_batches`); ``expanded`` treats every
  pair as its own example. Held-out metrics are pairwise either way.
* Ties: with ``tie_rule`` ``half`` or ``davidson`` the data keeps tie outcomes as pairs flagged
  ``tie`` (worker/data.py) and the loss gives them the rule's term (`ranking_batches.pair_losses`);
  training then goes through the grouped trainer (each pair its own group unless ``per_prompt``),
  because TRL's collator drops every column but the token ids and the margin. Held-out accuracy
  counts the decisive pairs only; ``eval/tie_gap`` is the mean |r_a - r_b| on held-out ties over
  that on decisive pairs (lower: ties told apart from wins), and ``eval/tie_nll`` is the mean
  negative log-likelihood of the held-out ties under the rule (Davidson's P(tie) with the learned
  or fixed nu; half: -log of the 0.5 soft label's likelihood, i.e. the half loss).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset
from transformers import set_seed
from trl import RewardConfig as TRLRewardConfig
from trl import RewardTrainer
from trl.trainer.utils import disable_dropout_in_model

from app.models import RunPhase
from app.schemas.training import RewardConfig
from worker.training._trl import (
    assistant,
    common_args,
    connect,
    conversation,
    load_dtype,
    lora_config,
    save_final,
    scratch_dir,
    split_by_prompt,
)
from worker.training.base import ModelRef, Reporter, TrainResult
from worker.training.models import load_reward_model, load_tokenizer
from worker.training.ranking_batches import GROUP, TIE, GroupedRewardTrainer, pair_losses


def pairs_to_dataset(
    pairs: list[dict[str, Any]], *, use_margin: bool, grouped: bool = False, ties: bool = False
) -> Dataset:
    """Preference pairs -> TRL's conversational explicit-prompt preference format (with each
    pair's group key when `grouped`, and its tie flag when `ties`)."""
    rows = []
    for pair in pairs:
        row: dict[str, Any] = {
            "prompt": conversation(pair["messages"]),
            "chosen": assistant(pair["chosen"]),
            "rejected": assistant(pair["rejected"]),
        }
        if use_margin:  # TRL adds the margin term whenever the column exists
            row["margin"] = float(pair.get("margin") or 0.0)
        if grouped:
            row[GROUP] = None if pair.get(GROUP) is None else str(pair[GROUP])
        if ties:
            row[TIE] = bool(pair.get(TIE))
        rows.append(row)
    return Dataset.from_list(rows)


def reward_args(config: RewardConfig, scratch: Path) -> TRLRewardConfig:
    return TRLRewardConfig(
        **common_args(config, scratch),
        center_rewards_coefficient=config.center_rewards_coefficient,
        disable_dropout=False,  # done on the base weights, before LoRA, so lora_dropout stays as set
    )


@torch.no_grad()
def pairwise_eval(
    trainer: RewardTrainer, dataset: Dataset, *, tie_rule: str = "drop", log_nu: torch.Tensor | None = None
) -> dict[str, float]:
    """Exact held-out metrics: accuracy (r_chosen > r_rejected) on decisive pairs, mean loss (by
    the tie rule) and mean margin; with ties, how they are told apart (module docstring)."""
    model = trainer.model
    assert model is not None, "a trainer holds its model once constructed"
    was_training = model.training
    model.eval()
    batch_size = trainer.args.per_device_eval_batch_size
    flags = dataset[TIE] if TIE in (dataset.column_names or []) else [False] * len(dataset)
    losses, diffs = [], []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = trainer.data_collator(rows)  # first half chosen, second half rejected
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        with trainer.compute_loss_context_manager():
            scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        chosen, rejected = scores.float().squeeze(-1).chunk(2)  # (B,), (B,)
        diff = chosen - rejected
        ties = torch.tensor(flags[start : start + len(rows)], dtype=torch.bool, device=diff.device)
        margin = batch.get("margin", torch.zeros_like(diff))
        losses.append(pair_losses(diff, margin, ties, tie_rule, log_nu))
        diffs.append(diff)
    model.train(was_training)
    diff, loss = torch.cat(diffs), torch.cat(losses)
    ties = torch.tensor(flags, dtype=torch.bool, device=diff.device)
    decisive = diff[~ties]
    metrics = {
        "eval/accuracy": float((decisive > 0).float().mean()) if len(decisive) else 0.0,
        "loss/eval": float(loss.mean()),
        "eval/margin": float(decisive.mean()) if len(decisive) else 0.0,
        "eval/pairs": float(len(decisive)),
    }
    if ties.any():
        tied = diff[ties]
        metrics["eval/ties"] = float(len(tied))
        if len(decisive):
            metrics["eval/tie_gap"] = float(tied.abs().mean() / decisive.abs().mean().clamp_min(1e-8))
        metrics["eval/tie_nll"] = float(
            pair_losses(
                tied,
                torch.zeros_like(tied),
                torch.ones_like(ties[ties]),
                "davidson" if tie_rule == "davidson" else "half",
                log_nu,
            ).mean()
        )
    return metrics


def train_reward(
    *,
    config: RewardConfig,
    base: ModelRef,
    pairs: list[dict[str, Any]],
    output_dir: Path,
    reporter: Reporter,
) -> TrainResult:
    """Train a reward model on `pairs`; write it (or its LoRA adapter) to `output_dir`.

    The result is an AutoModelForSequenceClassification with one label and `pad_token_id` set,
    loadable with `load_reward_model`. Raises `Cancelled` (with nothing written) once
    `reporter.should_stop()`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} exists already")
    if not pairs:
        raise ValueError("no preference pairs to train on")

    # 1. seed before the score head (and LoRA matrices) are initialised
    set_seed(config.seed)

    # 2. tokenizer and a one-output sequence classifier on the base weights; dropout off
    tokenizer = load_tokenizer(base)
    model = load_reward_model(base, tokenizer, dtype=load_dtype(config))
    disable_dropout_in_model(model)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    reporter.phase(RunPhase.preparing)

    # 3. hold out whole prompts, deterministically by seed
    grouped = config.ranking_batching == "per_prompt"
    if config.tie_rule == "drop":
        pairs = [pair for pair in pairs if not pair.get(TIE)]  # data kept for another rule
        if not pairs:
            raise ValueError("no decisive preference pairs to train on (tie_rule drop drops the ties)")
    keep_ties = any(pair.get(TIE) for pair in pairs)  # none: TRL as is (Davidson's nu would fit 0)
    train_pairs, eval_pairs = split_by_prompt(pairs, config.eval_fraction, config.seed)
    train_dataset = pairs_to_dataset(
        train_pairs, use_margin=config.use_margin, grouped=grouped, ties=keep_ties
    )
    eval_dataset = (
        pairs_to_dataset(eval_pairs, use_margin=config.use_margin, ties=keep_ties) if eval_pairs else None
    )
    ties_used = sum(bool(pair.get(TIE)) for pair in train_pairs)
    reporter.log(
        f"reward: {len(train_pairs)} pairs for training, {len(eval_pairs)} held out; tie rule "
        f"{config.tie_rule}: {ties_used} of the training pairs are ties"
    )

    with scratch_dir("reward") as scratch:
        # 4. the trainer; TRL wraps the model with LoRA (score head trained in full) when asked
        arguments: dict[str, Any] = {
            "model": model,
            "args": reward_args(config, scratch),
            "train_dataset": train_dataset,
            "eval_dataset": eval_dataset,
            "processing_class": tokenizer,
            "peft_config": lora_config(config, "SEQ_CLS"),
        }
        trainer = (
            GroupedRewardTrainer(
                **arguments, use_margin=config.use_margin, tie_rule=config.tie_rule, tie_nu=config.tie_nu
            )
            if grouped or keep_ties
            else RewardTrainer(**arguments)
        )
        if grouped and isinstance(trainer, GroupedRewardTrainer):
            reporter.log(f"reward: {len(trainer.groups)} groups (rankings and single pairs) per epoch")
        bridge = connect(trainer, reporter)

        # 5. train: the callback reports each step and raises Cancelled when asked to stop
        trainer.train()

        # 6. held-out pairwise accuracy on the tokenized held-out set
        held_out = cast("Dataset | None", trainer.eval_dataset)  # TRL keeps the tokenized datasets.Dataset
        log_nu = trainer.log_nu if isinstance(trainer, GroupedRewardTrainer) else None
        if held_out is not None and len(held_out) > 0:
            bridge.report(pairwise_eval(trainer, held_out, tie_rule=config.tie_rule, log_nu=log_nu))
        tie_figures = {"data/ties": float(ties_used)}
        if log_nu is not None:
            nu = math.exp(float(log_nu.detach()))
            tie_figures["tie/nu"] = nu
            reporter.log(f"reward: Davidson nu {nu:.4g} ({'learned' if config.tie_nu is None else 'fixed'})")
        bridge.report(tie_figures)

        # 7. save once, atomically
        metrics = bridge.result_metrics()
        is_adapter = config.lora_r > 0
        save_final(trainer.model, tokenizer, output_dir, method="reward", config=config, metrics=metrics)
    reporter.log(f"reward: saved {'adapter' if is_adapter else 'model'} to {output_dir}")
    return TrainResult(output_dir=output_dir, is_adapter=is_adapter, metrics=metrics)
