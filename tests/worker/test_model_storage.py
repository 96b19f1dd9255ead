"""How versions are stored: full weights in the dtype they trained in, LoRA versions as their
adapter alone (loading applies the chain of adapters onto the full weights underneath, also from
a remote store), and a pad token reused from the vocabulary instead of a resize where it can."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from app.schemas.training import SFTConfig
from worker.training._trl import save_final
from worker.training.base import ModelRef
from worker.training.models import load_policy, load_tokenizer, publish

IDS = torch.tensor([[5, 9, 12, 30, 41, 7, 3], [8, 8, 20, 22, 50, 60, 3]])  # (2, 7) word ids


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def weight_dtypes(path: Path) -> set[torch.dtype]:
    dtypes = set()
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as weights:
            dtypes |= {weights.get_tensor(k).dtype for k in weights.keys()}  # noqa: SIM118
    return dtypes


@torch.no_grad()
def logits(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    return model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits.float()


def random_lora(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A LoRA wrapper whose B matrices are random (not zero), so that it changes the outputs."""
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                        task_type="CAUSAL_LM")  # fmt: skip
    return get_peft_model(model, config)


def test_full_weights_are_stored_in_the_dtype_they_trained_in(tiny_base: ModelRef, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_base)
    sizes = {}
    for bf16, dtype in (("off", torch.float32), ("on", torch.bfloat16)):
        out = tmp_path / f"full-{bf16}"
        model = load_policy(tiny_base, tokenizer)
        save_final(model, tokenizer, out, method="sft", config=SFTConfig(bf16=bf16), metrics={})
        assert weight_dtypes(out) == {dtype}
        sizes[bf16] = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        reloaded = load_policy(ModelRef(str(out)), load_tokenizer(ModelRef(str(out))))
        assert reloaded.dtype == torch.float32  # loading still chooses its own dtype
    assert sizes["on"] < 0.55 * sizes["off"]  # half the bytes (and a small header)


def test_a_lora_version_is_its_adapter_alone_and_loads_to_the_trained_outputs(
    tiny_base: ModelRef, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(tiny_base)
    trained = random_lora(load_policy(tiny_base, tokenizer), seed=1)
    expected = logits(trained)
    out = tmp_path / "adapter"
    save_final(trained, tokenizer, out, method="sft", config=SFTConfig(lora_r=4, bf16="on"), metrics={})

    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not files & {"model.safetensors", "pytorch_model.bin", "config.json"}  # no full weights
    adapter_bytes = (out / "adapter_model.safetensors").stat().st_size
    base_bytes = (Path(tiny_base.uri) / "model.safetensors").stat().st_size
    assert adapter_bytes < base_bytes / 4

    ref = ModelRef(str(out), is_adapter=True, base=tiny_base)
    merged = load_policy(ref, load_tokenizer(ref))
    assert not hasattr(merged, "peft_config")  # merged into plain weights
    assert torch.allclose(logits(merged), expected, atol=1e-5)
    unmerged = load_policy(ref, load_tokenizer(ref), merge_adapters=False)
    assert torch.allclose(logits(unmerged), expected, atol=1e-5)
    assert not torch.allclose(logits(load_policy(tiny_base, tokenizer)), expected, atol=1e-3)


def _chain(tiny_base: ModelRef, tmp_path: Path) -> tuple[Path, Path, torch.Tensor]:
    """Two LoRA versions, the second trained on top of the first (as a trainer loads its base:
    the first adapter merged). Returns their directories and the second's outputs."""
    tokenizer = load_tokenizer(tiny_base)
    first = tmp_path / "first"
    save_final(random_lora(load_policy(tiny_base, tokenizer), seed=1), tokenizer, first,
               method="sft", config=SFTConfig(lora_r=4), metrics={})  # fmt: skip
    first_ref = ModelRef(str(first), is_adapter=True, base=tiny_base)
    second_model = random_lora(load_policy(first_ref, load_tokenizer(first_ref)), seed=2)
    expected = logits(second_model)
    second = tmp_path / "second"
    save_final(second_model, tokenizer, second, method="dpo", config=SFTConfig(lora_r=4), metrics={})
    return first, second, expected


def test_an_adapter_on_top_of_an_adapter_loads_through_the_chain(tiny_base: ModelRef, tmp_path: Path) -> None:
    first, second, expected = _chain(tiny_base, tmp_path)
    assert not (second / "model.safetensors").exists()
    ref = ModelRef(str(second), is_adapter=True, base=ModelRef(str(first), is_adapter=True, base=tiny_base))
    assert torch.allclose(logits(load_policy(ref, load_tokenizer(ref))), expected, atol=1e-5)
    unmerged = load_policy(ref, load_tokenizer(ref), merge_adapters=False)
    assert torch.allclose(logits(unmerged), expected, atol=1e-5)
    # the second adapter alone on the base is a different model: the chain matters
    alone = ModelRef(str(second), is_adapter=True, base=tiny_base)
    assert not torch.allclose(logits(load_policy(alone, load_tokenizer(alone))), expected, atol=1e-3)


def test_a_registered_chain_in_a_remote_store_is_fetched_and_applied(
    tiny_base: ModelRef, tmp_path: Path, pg_factory
) -> None:  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.models import ModelKind, ModelVersion
    from worker.runner import model_ref

    first, second, expected = _chain(tiny_base, tmp_path)
    store = f"memory://rlhf-chain-{tmp_path.name}"
    with session_scope(pg_factory) as session:
        base = ModelVersion(name=f"chain-base-{tmp_path.name}", kind=ModelKind.policy, uri=tiny_base.uri)
        session.add(base)
        session.flush()
        parent = base
        for directory in (first, second):
            version = ModelVersion(name=f"chain-{directory.name}-{tmp_path.name}", kind=ModelKind.policy,
                                   parent_id=parent.id, is_adapter=True,
                                   uri=publish(directory, store, directory.name))  # fmt: skip
            session.add(version)
            session.flush()
            parent = version
        top_id = parent.id
    with pg_factory() as session:
        ref = model_ref(session, top_id, tmp_path / "cache")
    assert ref.is_adapter and ref.base is not None and ref.base.is_adapter
    assert ref.base.base is not None and ref.base.base.uri == tiny_base.uri
    assert Path(ref.uri).is_relative_to(tmp_path / "cache")
    assert torch.allclose(logits(load_policy(ref, load_tokenizer(ref))), expected, atol=1e-5)


# --- the pad token ----------------------------------------------------------------------------


def _model_dir(path: Path, specials: list[str], *, unk: str, eos: str, pad: str | None) -> Path:
    """A word-level tokenizer whose first ids are `specials`, and a 1-layer Llama sized to it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "user assistant the cat dog is happy sad a".split()
    vocab = {token: i for i, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unk, eos_token=eos,
                                        bos_token="<|im_start|>", pad_token=pad)  # fmt: skip
    tokenizer.chat_template = "{% for m in messages %}<|im_start|> {{ m['content'] }} <|im_end|> {% endfor %}"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def transformers_warnings(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    hf_logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    yield caplog
    hf_logging.disable_propagation()


def test_a_tokenizer_padding_with_eos_reuses_a_special_token_it_has(
    tmp_path: Path, transformers_warnings: pytest.LogCaptureFixture
) -> None:
    """SmolLM2's tokenizer pads with EOS (`<|im_end|>`) and has `<|endoftext|>` (its unk token),
    which no chat turn contains: padding takes it, and the vocabulary stays as it is."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    ref = ModelRef(
        str(_model_dir(tmp_path / "m", specials, unk="<|endoftext|>", eos="<|im_end|>", pad="<|im_end|>"))
    )
    tokenizer = load_tokenizer(ref)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 0
    assert tokenizer.pad_token_id != tokenizer.eos_token_id and tokenizer.padding_side == "left"
    assert len(tokenizer) == len(specials) + 9  # nothing added
    model = load_policy(ref, tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.pad_token_id == 0 and model.generation_config.pad_token_id == 0
    assert not [r for r in transformers_warnings.records if "embeddings" in r.getMessage()]


def test_a_tokenizer_with_nothing_to_reuse_gets_a_new_pad_token(tmp_path: Path) -> None:
    specials = ["<|im_start|>", "<|im_end|>"]  # its unk is its EOS: nothing can pad
    ref = ModelRef(str(_model_dir(tmp_path / "m", specials, unk="<|im_end|>", eos="<|im_end|>", pad=None)))
    tokenizer = load_tokenizer(ref)
    assert tokenizer.pad_token == "<|pad|>" and len(tokenizer) == len(specials) + 10
    model = load_policy(ref, tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
