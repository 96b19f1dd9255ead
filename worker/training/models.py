"""Loading, LoRA and saving of models. The one place that knows how weights are stored.

Hazards handled here:
* A tokenizer without a pad token distinct from EOS (padding with EOS would hide where real
  completions end) reuses a special token it already has that nothing writes (`pad_candidate`);
  only when it has none is `<|pad|>` added and the embeddings resized.
* A version trained with LoRA is stored as its adapter alone; loading applies the chain of
  adapters (a LoRA version trained on top of another) onto the full weights underneath.
* Saving is atomic: files go to a sibling temporary directory that is renamed into place only
  when complete, so a crash never leaves a directory that looks like a finished model.
* GGUF checkpoints (the demo model) are dequantised on load; the quantizer is removed before
  `save_pretrained`, as transformers requires.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from worker.training.base import ModelRef


@dataclass
class LoraSettings:
    """LoRA through PEFT. `r` 0 means full fine-tuning."""

    r: int = 0
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    @property
    def enabled(self) -> bool:
        return self.r > 0

    def peft_config(self, task_type: str) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type=task_type,
        )


def best_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """bf16 where the hardware supports it (CUDA with bf16), fp32 elsewhere."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _weights_ref(ref: ModelRef) -> ModelRef:
    """The full-weights model underneath an adapter chain."""
    while ref.is_adapter:
        assert ref.base is not None, "an adapter needs its base model"
        ref = ref.base
    return ref


def _load_kwargs(ref: ModelRef) -> dict[str, Any]:
    return {"gguf_file": ref.gguf_file} if ref.gguf_file else {}


# Special tokens that mark padding or the end of a document: never written by the chat template,
# so a tokenizer that has one can pad with it instead of growing its vocabulary.
PAD_CANDIDATES = ("<|pad|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>", "<|endoftext|>", "</s>")


def load_tokenizer(ref: ModelRef) -> PreTrainedTokenizerBase:
    """The tokenizer of a version (of the full weights under an adapter without one), padding on
    the left with a real pad token, distinct from EOS."""
    source = ref if not ref.is_adapter or _has_tokenizer(ref.uri) else _weights_ref(ref)
    tokenizer = AutoTokenizer.from_pretrained(source.uri, **_load_kwargs(source))
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        reused = pad_candidate(tokenizer)
        if reused is not None:
            tokenizer.pad_token = reused
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    tokenizer.padding_side = "left"
    return tokenizer


def pad_candidate(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A token the tokenizer has that can pad without a new embedding: one of `PAD_CANDIDATES`,
    else its unknown token (byte-level vocabularies never produce it), provided it is a single
    known id, not BOS or EOS, and absent from the chat template."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    taken = {tokenizer.eos_token_id, tokenizer.bos_token_id}
    vocab = tokenizer.get_vocab()
    for token in (*PAD_CANDIDATES, tokenizer.unk_token):
        if token is not None and token in vocab and vocab[token] not in taken and token not in template:
            return str(token)
    return None


def _has_tokenizer(uri: str) -> bool:
    path = Path(uri)
    return (path / "tokenizer_config.json").exists() or (path / "tokenizer.json").exists()


def _resize_for(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    embedding = cast(torch.Tensor, model.get_input_embeddings().weight)  # nn.Module types it loosely
    if embedding.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_policy(
    ref: ModelRef,
    tokenizer: PreTrainedTokenizerBase,
    *,
    dtype: torch.dtype = torch.float32,
    merge_adapters: bool = True,
) -> PreTrainedModel:
    """A causal LM. Adapters in the chain are applied (and merged unless told otherwise)."""
    weights = _weights_ref(ref)
    model = AutoModelForCausalLM.from_pretrained(weights.uri, dtype=dtype, **_load_kwargs(weights))
    _drop_quantizer(model)
    _resize_for(model, tokenizer)
    return _apply_adapters(model, ref, merge=merge_adapters)


def load_reward_model(
    ref: ModelRef, tokenizer: PreTrainedTokenizerBase, *, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """A sequence classifier with one output. From a causal LM, the score head starts fresh."""
    weights = _weights_ref(ref)
    model = AutoModelForSequenceClassification.from_pretrained(
        weights.uri, num_labels=1, dtype=dtype, **_load_kwargs(weights)
    )
    _drop_quantizer(model)
    _resize_for(model, tokenizer)
    return _apply_adapters(model, ref, merge=True)


def _apply_adapters(model: PreTrainedModel, ref: ModelRef, *, merge: bool) -> PreTrainedModel:
    chain: list[ModelRef] = []
    while ref.is_adapter:
        chain.append(ref)
        assert ref.base is not None
        ref = ref.base
    if not chain:
        return model
    from peft import PeftModel

    # A PeftModel forwards the PreTrainedModel interface to the model it wraps.
    for adapter in reversed(chain):
        wrapped = PeftModel.from_pretrained(model, adapter.uri)
        merged = merge or adapter is not chain[0]
        model = cast(PreTrainedModel, wrapped.merge_and_unload() if merged else wrapped)
    return model


def _drop_quantizer(model: PreTrainedModel) -> None:
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def is_adapter_model(model: Any) -> bool:
    """True for a PEFT model, whose `save_pretrained` writes the adapter alone."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def storage_dtype(trained_in_bf16: bool) -> torch.dtype:
    """The dtype a version's full weights are stored in: the one it trained in (bf16 mixed
    precision keeps fp32 master weights, stored in bf16, half the bytes)."""
    return torch.bfloat16 if trained_in_bf16 else torch.float32


class SavesBeside(Protocol):
    """What `save_atomically` writes beside the model: a tokenizer, or anything saved alike."""

    def save_pretrained(self, save_directory: Path, /) -> object: ...


def save_atomically(
    model: PreTrainedModel,
    tokenizer: SavesBeside | None,
    final_dir: Path,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model (or adapter) so that `final_dir` exists only once it is complete.

    `dtype` casts full weights before writing (the model is not used afterwards); an adapter is
    written as PEFT keeps it (fp32 adapter weights, a few MB), whatever `dtype` says.
    """
    final_dir = Path(final_dir)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir} exists already; model directories are never overwritten")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = final_dir.parent / f".{final_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        _drop_quantizer(model)
        if dtype is not None and not is_adapter_model(model) and model.dtype != dtype:
            model.to(dtype)  # type: ignore[arg-type]  # mypy reads transformers' functools.wraps as unbound
        model.save_pretrained(partial)
        if tokenizer is not None:
            tokenizer.save_pretrained(partial)
        os.replace(partial, final_dir)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return final_dir


def publish(local_dir: Path, storage_url: str, name: str) -> str:
    """Move a finished model directory into the shared artifact store; returns its URI.

    `storage_url` is a local directory or any fsspec URL (`s3://bucket/prefix`). For remote
    stores the upload goes to a temporary prefix first and a `_COMPLETE` marker is written last.
    """
    if "://" not in storage_url or storage_url.startswith("file://"):
        local_root = Path(storage_url.removeprefix("file://"))
        local_root.mkdir(parents=True, exist_ok=True)
        local_target = local_root / name
        if local_target.exists():
            raise FileExistsError(f"{local_target} exists already")
        shutil.move(str(local_dir), local_target)
        return str(local_target.resolve())
    import fsspec

    fs, root = fsspec.core.url_to_fs(storage_url)
    target = f"{root.rstrip('/')}/{name}"
    fs.put(str(local_dir), target, recursive=True)
    with fs.open(f"{target}/_COMPLETE", "w") as marker:
        marker.write("ok")
    shutil.rmtree(local_dir, ignore_errors=True)
    return f"{storage_url.rstrip('/')}/{name}"


def fetch(uri: str, cache_dir: Path) -> str:
    """A local directory for a model URI: local paths as they are; remote stores (any fsspec URL
    written by `publish`) downloaded once into `cache_dir`, only when their `_COMPLETE` marker
    shows the upload finished."""
    if "://" not in uri or uri.startswith("file://"):
        return uri.removeprefix("file://")
    import hashlib

    import fsspec

    target = Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if target.exists():
        return str(target)
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    if not fs.exists(f"{root}/_COMPLETE"):
        raise FileNotFoundError(f"{uri} is not a complete model upload (no _COMPLETE marker)")
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        fs.get(f"{root}/", str(partial), recursive=True)
        os.replace(partial, target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return str(target)
