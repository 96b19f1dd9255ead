"""Supervised fine-tuning on demonstrations, with TRL's SFTTrainer.

A demonstration is `{"messages": [... a conversation ending with a user turn ...], "response":
"the ideal answer"}`. It becomes a conversational prompt-completion example:

    {"prompt": messages, "completion": [{"role": "assistant", "content": response}]}

so that the loss is on the response alone (TRL's `completion_only_loss`, which TRL 1.16 turns on
for prompt-completion data by default; we set it explicitly). TRL renders prompt and
prompt+completion with the chat template and masks the tokens they share; the completion's
end-of-turn token is part of the completion, so the model also learns to stop.

Hazards:
* The chat template must render the prompt (with `add_generation_prompt`) as a prefix of the
  prompt+completion; TRL warns once when it does not, and the completion then starts where they
  diverge.
* Dropout is switched off in the base model before LoRA wraps it (SFTConfig has no
  `disable_dropout`), so the only dropout left is the LoRA branch's own, as configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer
from trl.trainer.utils import disable_dropout_in_model

from app.models import RunPhase
from app.schemas.training import SFTConfig
from worker.training._trl import (
    assistant,
    common_args,
    connect,
    conversation,
    load_dtype,
    lora_config,
    save_final,
    scratch_dir,
)
from worker.training.base import ModelRef, Reporter, TrainResult
from worker.training.models import load_policy, load_tokenizer


def demos_to_dataset(demos: list[dict[str, Any]]) -> Dataset:
    """Demonstrations -> TRL's conversational prompt-completion format."""
    return Dataset.from_list(
        [{"prompt": conversation(d["messages"]), "completion": assistant(d["response"])} for d in demos]
    )


def sft_args(config: SFTConfig, scratch: Path) -> TRLSFTConfig:
    return TRLSFTConfig(
        **common_args(config, scratch),
        completion_only_loss=True,  # loss on the response only, never on the prompt
        assistant_only_loss=False,  # the completion is the assistant turn already
        packing=False,  # one demonstration per row: packing would change what a step means
    )


def train_sft(
    *,
    config: SFTConfig,
    base: ModelRef,
    demos: list[dict[str, Any]],
    output_dir: Path,
    reporter: Reporter,
    eval_demos: list[dict[str, Any]] | None = None,
) -> TrainResult:
    """Fine-tune `base` on `demos`; write the model (or LoRA adapter) to `output_dir`.

    `eval_demos`, when given, are held-out demonstrations whose loss is reported as `loss/eval`
    at the end. Raises `Cancelled` (with nothing written) once `reporter.should_stop()`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} exists already")
    if not demos:
        raise ValueError("no demonstrations to train on")

    # 1. seed everything before any weights are created (LoRA initialises its matrices randomly)
    set_seed(config.seed)

    # 2. tokenizer and policy; dropout off in the base weights
    tokenizer = load_tokenizer(base)
    model = load_policy(base, tokenizer, dtype=load_dtype(config))
    reporter.phase(RunPhase.preparing)
    disable_dropout_in_model(model)

    # 3. data in TRL's conversational prompt-completion format
    train_dataset = demos_to_dataset(demos)
    eval_dataset = demos_to_dataset(eval_demos) if eval_demos else None
    reporter.log(f"sft: {len(train_dataset)} demonstrations, {len(eval_demos or [])} held out")

    with scratch_dir("sft") as scratch:
        # 4. the trainer; TRL wraps the model with LoRA when a peft_config is given
        trainer = SFTTrainer(
            model=model,
            args=sft_args(config, scratch),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=lora_config(config, "CAUSAL_LM"),
        )

        bridge = connect(trainer, reporter)

        # 5. train: the callback reports each step and raises Cancelled when asked to stop
        trainer.train()

        # 6. held-out loss, once, at the end (reported by the callback as loss/eval)
        if eval_dataset is not None:
            trainer.evaluate()

        # 7. save once, atomically; a LoRA model saves its adapter only
        metrics = bridge.result_metrics()
        is_adapter = config.lora_r > 0
        save_final(trainer.model, tokenizer, output_dir, method="sft", config=config, metrics=metrics)
    reporter.log(f"sft: saved {'adapter' if is_adapter else 'model'} to {output_dir}")
    return TrainResult(output_dir=output_dir, is_adapter=is_adapter, metrics=metrics)
