"""Direct preference optimisation, with TRL's DPOTrainer: preferences to policy, no reward model.

Pairs have the reward model's format (`prompt_id`, `messages`, `chosen`, `rejected`) and become
TRL's conversational preference format with an explicit prompt:

    {"prompt": messages, "chosen": [assistant turn], "rejected": [assistant turn]}

The loss (`config.loss_type`: sigmoid, ipo or hinge) pushes up
`beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]`, the implicit reward
margin; `rewards/accuracies` is the share of pairs where that margin is positive.

Hazards:
* The reference model. With LoRA there is no second copy: TRL computes the reference log-probs
  with the adapter disabled, i.e. from the base itself. Without LoRA, TRL would reload the
  reference from `model.config._name_or_path`, which is wrong for us (merged adapter chains, GGUF
  files, a pad token added by `load_tokenizer`): we load the reference the same way as the policy
  and pass it in.
* Whole prompts are held out (`split_by_prompt`), as for the reward model.
* Dropout is off in policy and reference: with dropout, the policy and reference log-probs of an
  unchanged model differ and the initial loss is not log(2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from datasets import Dataset
from transformers import set_seed
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer
from trl.trainer.utils import disable_dropout_in_model

from app.models import RunPhase
from app.schemas.training import DPOConfig
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
from worker.training.models import load_policy, load_tokenizer


def pairs_to_dataset(pairs: list[dict[str, Any]]) -> Dataset:
    """Preference pairs -> TRL's conversational explicit-prompt preference format."""
    return Dataset.from_list(
        [
            {
                "prompt": conversation(p["messages"]),
                "chosen": assistant(p["chosen"]),
                "rejected": assistant(p["rejected"]),
            }
            for p in pairs
        ]
    )


def dpo_args(config: DPOConfig, scratch: Path) -> TRLDPOConfig:
    return TRLDPOConfig(
        **common_args(config, scratch),
        beta=config.beta,
        loss_type=[config.loss_type],
        disable_dropout=False,  # done on the base weights, before LoRA, so lora_dropout stays as set
    )


def train_dpo(
    *,
    config: DPOConfig,
    base: ModelRef,
    pairs: list[dict[str, Any]],
    output_dir: Path,
    reporter: Reporter,
) -> TrainResult:
    """Train the policy `base` on preference `pairs`; write it (or its LoRA adapter) to `output_dir`.

    `base` is also the reference. Raises `Cancelled` (with nothing written) once
    `reporter.should_stop()`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} exists already")
    if not pairs:
        raise ValueError("no preference pairs to train on")

    # 1. seed before the LoRA matrices are initialised
    set_seed(config.seed)

    # 2. tokenizer, policy and (full fine-tuning only) a frozen reference copy; dropout off in both
    tokenizer = load_tokenizer(base)
    dtype = load_dtype(config)
    model = load_policy(base, tokenizer, dtype=dtype)
    disable_dropout_in_model(model)
    ref_model = None
    if config.lora_r == 0:
        ref_model = load_policy(base, tokenizer, dtype=dtype)
        disable_dropout_in_model(ref_model)
        ref_model.eval().requires_grad_(False)
    reporter.phase(RunPhase.preparing)

    # 3. hold out whole prompts, deterministically by seed
    train_pairs, eval_pairs = split_by_prompt(pairs, config.eval_fraction, config.seed)
    train_dataset = pairs_to_dataset(train_pairs)
    eval_dataset = pairs_to_dataset(eval_pairs) if eval_pairs else None
    reporter.log(f"dpo: {len(train_pairs)} pairs for training, {len(eval_pairs)} held out")

    with scratch_dir("dpo") as scratch:
        # 4. the trainer; with a peft_config TRL wraps the policy and uses it, adapter disabled,
        #    as the reference
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model,
            args=dpo_args(config, scratch),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=lora_config(config, "CAUSAL_LM"),
        )
        bridge = connect(trainer, reporter)

        # 5. train: the callback reports loss, rewards/accuracies, rewards/margins every step
        trainer.train()

        # 6. held-out preference metrics, once (reported by the callback as eval/rewards/...)
        held_out = cast("Dataset | None", trainer.eval_dataset)  # TRL keeps the tokenized datasets.Dataset
        if held_out is not None and len(held_out) > 0:
            trainer.evaluate()

        # 7. save once, atomically
        metrics = bridge.result_metrics()
        is_adapter = config.lora_r > 0
        save_final(trainer.model, tokenizer, output_dir, method="dpo", config=config, metrics=metrics)
    reporter.log(f"dpo: saved {'adapter' if is_adapter else 'model'} to {output_dir}")
    return TrainResult(output_dir=output_dir, is_adapter=is_adapter, metrics=metrics)
