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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
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
from worker.training.ranking_batches import GROUP, GroupedRewardTrainer


def pairs_to_dataset(pairs: list[dict[str, Any]], *, use_margin: bool, grouped: bool = False) -> Dataset:
    """Preference pairs -> TRL's conversational explicit-prompt preference format (with each
    pair's group key when `grouped`)."""
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
        rows.append(row)
    return Dataset.from_list(rows)


def reward_args(config: RewardConfig, scratch: Path) -> TRLRewardConfig:
    return TRLRewardConfig(
        **common_args(config, scratch),
        center_rewards_coefficient=config.center_rewards_coefficient,
        disable_dropout=False,  # done on the base weights, before LoRA, so lora_dropout stays as set
    )


@torch.no_grad()
def pairwise_eval(trainer: RewardTrainer, dataset: Dataset) -> dict[str, float]:
    """Exact held-out metrics: accuracy (r_chosen > r_rejected), mean loss and mean margin."""
    model = trainer.model
    assert model is not None, "a trainer holds its model once constructed"
    was_training = model.training
    model.eval()
    batch_size = trainer.args.per_device_eval_batch_size
    correct, losses, margins = 0, [], []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = trainer.data_collator(rows)  # first half chosen, second half rejected
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        with trainer.compute_loss_context_manager():
            scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        chosen, rejected = scores.float().squeeze(-1).chunk(2)  # (B,), (B,)
        diff = chosen - rejected
        correct += int((diff > 0).sum())
        losses.append(-F.logsigmoid(diff - batch.get("margin", 0.0)))
        margins.append(diff)
    model.train(was_training)
    return {
        "eval/accuracy": correct / len(dataset),
        "loss/eval": float(torch.cat(losses).mean()),
        "eval/margin": float(torch.cat(margins).mean()),
        "eval/pairs": float(len(dataset)),
    }


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
    train_pairs, eval_pairs = split_by_prompt(pairs, config.eval_fraction, config.seed)
    grouped = config.ranking_batching == "per_prompt"
    train_dataset = pairs_to_dataset(train_pairs, use_margin=config.use_margin, grouped=grouped)
    eval_dataset = pairs_to_dataset(eval_pairs, use_margin=config.use_margin) if eval_pairs else None
    reporter.log(f"reward: {len(train_pairs)} pairs for training, {len(eval_pairs)} held out")

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
            GroupedRewardTrainer(**arguments, use_margin=config.use_margin)
            if grouped
            else RewardTrainer(**arguments)
        )
        if isinstance(trainer, GroupedRewardTrainer):
            reporter.log(f"reward: {len(trainer.groups)} groups (rankings and single pairs) per epoch")
        bridge = connect(trainer, reporter)

        # 5. train: the callback reports each step and raises Cancelled when asked to stop
        trainer.train()

        # 6. held-out pairwise accuracy on the tokenized held-out set
        held_out = cast("Dataset | None", trainer.eval_dataset)  # TRL keeps the tokenized datasets.Dataset
        if held_out is not None and len(held_out) > 0:
            bridge.report(pairwise_eval(trainer, held_out))

        # 7. save once, atomically
        metrics = bridge.result_metrics()
        is_adapter = config.lora_r > 0
        save_final(trainer.model, tokenizer, output_dir, method="reward", config=config, metrics=metrics)
    reporter.log(f"reward: saved {'adapter' if is_adapter else 'model'} to {output_dir}")
    return TrainResult(output_dir=output_dir, is_adapter=is_adapter, metrics=metrics)
