"""What the three TRL-based trainers (sft.py, reward.py, dpo.py) share.

* `ReporterCallback` bridges transformers' `TrainerCallback` to our `Reporter`: one `reporter.step`
  per optimizer step with namespaced metrics, and `Cancelled` raised at the first step after
  `reporter.should_stop()` turns true.
* `common_args` turns our pydantic config into the keyword arguments every TRL config needs, so
  that the three trainers resolve precision, logging and checkpointing the same way.
* `split_by_prompt` holds out whole prompts, never single pairs of a prompt.
* `scratch_dir` is the only place TRL may write to; `save_final` writes the finished model once.

Hazards handled here:
* TRL's configs default to `bf16=True` and `gradient_checkpointing=True` (unlike transformers):
  both are always set explicitly. bf16 on a CPU means slow autocast, so "auto" enables it only on
  CUDA devices that support it.
* transformers' `Trainer` writes checkpoints and model cards under `output_dir`: we give it a
  temporary directory and `save_strategy="no"`, so the only model written is the final one.
* Reporting tools (wandb, trackio, ...) are picked up from the environment unless
  `report_to="none"`.
* Under `accelerate launch` (launch.py) the same code runs on every rank and the Trainer
  distributes itself (DDP; logged losses are already averaged over ranks). Rank-safety: each
  rank has its own `scratch_dir` (nothing is saved there, `save_strategy="no"`); the reporter
  drops steps and logs off rank 0 and all-reduces `should_stop`, which the callback calls at the
  same points on every rank; `save_final` writes on rank 0 only, behind a barrier.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from app.schemas.training import DPOConfig, RewardConfig, SFTConfig
from worker.training.base import Cancelled, Reporter
from worker.training.distributed import barrier, is_main_process, world_size
from worker.training.models import LoraSettings, best_dtype, save_atomically, storage_dtype

# Keys of transformers' end-of-training summary: reported once, in the result, not per step.
_SUMMARY_KEYS = {
    "train_runtime": "train/runtime_s",
    "train_samples_per_second": "train/samples_per_second",
    "train_steps_per_second": "train/steps_per_second",
    "train_loss": "loss/train_mean",
}
# Bookkeeping that is not a metric of the model.
_SKIPPED_KEYS = {"step", "epoch", "num_input_tokens_seen", "num_tokens", "eval_num_tokens"}


def metric_name(key: str) -> str:
    """transformers/TRL log keys -> our namespaced names.

    `loss` -> `loss/train`, `eval_loss` -> `loss/eval`, `eval_accuracy` -> `eval/accuracy`,
    `grad_norm` -> `train/grad_norm`; TRL's already namespaced keys (`rewards/margins`) stay.
    """
    if key == "loss":
        return "loss/train"
    if key == "eval_loss":
        return "loss/eval"
    if key.startswith("eval_"):
        return "eval/" + key.removeprefix("eval_")
    if "/" in key:
        return key
    return "train/" + key


class ReporterCallback(TrainerCallback):
    """Forwards every log to the reporter and turns a cancellation into `Cancelled`.

    Ordering in `Trainer`: after each optimizer step it calls `on_step_end`, then logs (we set
    `logging_steps=1`), which calls `on_log`. So the metrics of step N are reported from `on_log`,
    and the stop request is checked at `on_step_end` (and before the first step).
    """

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.latest: dict[str, float] = {}  # the last value of every reported metric
        self.summary: dict[str, float] = {}  # transformers' end-of-training figures
        self.step = 0
        self.total = 0

    def _check_stop(self) -> None:
        if self.reporter.should_stop():
            self.reporter.log(f"cancelled at step {self.step}; nothing is saved")
            raise Cancelled(f"cancelled at step {self.step}")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.total = state.max_steps
        self._check_stop()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.step = state.global_step
        self._check_stop()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "train_runtime" in logs:  # the summary at the end of `train()`
            self.summary.update({name: float(logs[k]) for k, name in _SUMMARY_KEYS.items() if k in logs})
            return
        metrics = {
            metric_name(k): float(v)
            for k, v in logs.items()
            if k not in _SKIPPED_KEYS
            and isinstance(v, int | float)
            and not k.endswith("_runtime")
            and not k.endswith("_per_second")
        }
        self.report(metrics, step=state.global_step)

    def report(self, metrics: dict[str, float], *, step: int | None = None) -> None:
        """Report metrics computed outside the trainer (a final evaluation) at the current step."""
        if not metrics:
            return
        self.latest.update(metrics)
        self.reporter.step(self.step if step is None else step, self.total, metrics)

    def result_metrics(self) -> dict[str, float]:
        return {**self.latest, **self.summary}


def connect(trainer: Trainer, reporter: Reporter) -> ReporterCallback:
    """Attach the reporter to a constructed trainer, replacing transformers' console printer."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    ranks = world_size()
    if ranks > 1:
        # Under launch.py the Trainer must see the process group, or every rank would silently
        # train alone on all the data (transformers only warns).
        if trainer.args.world_size != ranks:
            raise RuntimeError(
                f"{ranks} processes were launched but the Trainer runs in {trainer.args.world_size} "
                f"({trainer.args.parallel_mode}): is ACCELERATE_USE_CPU set on a CPU host?"
            )
        reporter.log(f"trainer: data parallel over {ranks} processes ({trainer.args.parallel_mode.value})")
    bridge = ReporterCallback(reporter)
    trainer.add_callback(bridge)
    return bridge


def use_bf16(setting: str) -> bool:
    """Mixed precision per the config: "auto" only where the hardware supports bf16 (not CPUs)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return best_dtype() == torch.bfloat16


def load_dtype(config: Any) -> torch.dtype:
    """The dtype to load weights in. Full fine-tuning keeps fp32 master weights (bf16 is autocast);
    with LoRA the frozen base may be stored in bf16, halving its memory, while PEFT keeps the
    adapter weights in fp32."""
    if config.lora_r > 0 and use_bf16(config.bf16):
        return torch.bfloat16
    return torch.float32


def lora_config(config: Any, task_type: str) -> Any:
    """A PEFT `LoraConfig` when `lora_r` > 0, else None (full fine-tuning)."""
    settings = LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    return settings.peft_config(task_type) if settings.enabled else None


def common_args(config: Any, scratch: Path) -> dict[str, Any]:
    """Keyword arguments shared by TRL's SFTConfig, RewardConfig and DPOConfig."""
    return {
        "output_dir": str(scratch),
        "seed": config.seed,
        "data_seed": config.seed,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "max_length": config.max_length,
        "bf16": use_bf16(config.bf16),
        "fp16": False,
        # TRL turns it on by default (as `gradient_checkpointing`, now an alias); on small models it
        # only costs time. No config field yet.
        "activation_checkpointing": False,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "logging_steps": 1,  # one `reporter.step` per optimizer step
        "logging_strategy": "steps",
        "eval_strategy": "no",  # the trainers evaluate once, at the end
        "save_strategy": "no",  # no checkpoints: the one save is `save_final`
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Under accelerate launch (DDP): every trainable weight takes part in each forward, so
        # skip DDP's extra graph traversal that looks for unused ones (transformers turns it on).
        "ddp_find_unused_parameters": False,
        "push_to_hub": False,
    }


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary `output_dir` for the trainer, removed whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"rlhf-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def split_by_prompt(
    pairs: list[dict[str, Any]], eval_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) with every prompt_id on one side only; the same seed gives the same split.

    At least one prompt is held out when `eval_fraction` > 0 and there are two prompts or more.
    """
    prompt_ids = sorted({pair["prompt_id"] for pair in pairs})
    if eval_fraction <= 0 or len(prompt_ids) < 2:
        return list(pairs), []
    random.Random(seed).shuffle(prompt_ids)
    n_eval = min(len(prompt_ids) - 1, max(1, round(len(prompt_ids) * eval_fraction)))
    held_out = set(prompt_ids[:n_eval])
    train = [p for p in pairs if p["prompt_id"] not in held_out]
    held = [p for p in pairs if p["prompt_id"] in held_out]
    return train, held


def conversation(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Only role and content: extra keys would give Arrow rows of different schemas."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


class _TokenizerWithRunConfig:
    """Saves the tokenizer and, beside it, the resolved run config (`training_config.json`).

    `save_atomically` takes a model and a tokenizer only; passing this in place of the tokenizer
    puts the config inside the directory before it is renamed into place.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.config = config

    def save_pretrained(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(path)
        Path(path, "training_config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True))


def save_final(
    model: torch.nn.Module | None,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    *,
    method: str,
    config: SFTConfig | RewardConfig | DPOConfig,
    metrics: dict[str, float],
) -> Path:
    """Write the finished model (or LoRA adapter), tokenizer and run config, atomically; full
    weights in the dtype they trained in (bf16 under bf16 mixed precision, else fp32).

    `model` is the trainer's: a PreTrainedModel, or the PEFT wrapper that forwards its interface."""
    assert model is not None, "a trainer holds its model once constructed"
    run_config = {"method": method, "config": config.model_dump(mode="json"), "metrics": metrics}
    model.eval()
    # Under `accelerate launch` every rank gets here with the same weights: rank 0 writes, the
    # others wait, so that no rank returns (and the run is not published) before the directory
    # is complete. A no-op in a single process.
    if is_main_process():
        with_config = _TokenizerWithRunConfig(tokenizer, run_config)
        dtype = storage_dtype(use_bf16(config.bf16))
        save_atomically(cast(PreTrainedModel, model), with_config, output_dir, dtype=dtype)
    barrier()
    return output_dir
