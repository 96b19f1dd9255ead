"""Tiny models for the trainer tests: a word-level tokenizer and a 2-layer Llama, made on the fly.

They train in seconds on a CPU, so a test can show that a method moves a model in the direction
it should on data whose right answer is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|> {{ message['role'] }} {{ message['content'] }} <|im_end|> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = (
    "user assistant system the a an is are was be to of and in on for with it that this what why "
    "how who when where which tell me about say give write please answer question good bad great "
    "yes no maybe sure ok thanks hello hi cat dog bird fish tree sun moon star sky sea river hill "
    "red blue green yellow black white big small fast slow happy sad warm cold new old one two "
    "three four five six seven eight nine ten apple banana cherry grape lemon mango pear plum "
    "run walk jump swim fly sing read play sleep eat drink see hear think know like love help "
    "very really quite much more most less little some any all none every each other same "
    "here there now then today soon always never often because so but or if not too also"
).split()


def make_tiny_tokenizer(extra_words: list[str] | None = None):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in SPECIAL + WORDS + list(extra_words or []):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        bos_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _llama_config(tokenizer: Any, *, hidden: int, layers: int, max_positions: int, tied: bool) -> Any:
    """A Llama config for `tokenizer` (4 heads, MLP twice the hidden size, no BOS token)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=tied,
    )


def make_tiny_causal_lm(path: Path, *, extra_words: list[str] | None = None, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer Llama and its tokenizer to `path`; return `path`."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer(extra_words)
    config = _llama_config(tokenizer, hidden=64, layers=2, max_positions=256, tied=True)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_forced_causal_lm(path: Path, token: str, *, extra_words: list[str] | None = None) -> Path:
    """Save a 1-layer Llama that always puts almost all its next-token probability on `token`.

    Attention and MLP outputs are zeroed, so the last hidden state is the input embedding, whose
    dimension 0 is a large constant; the (untied) head reads that dimension only for `token`.
    """
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer(extra_words)
    config = _llama_config(tokenizer, hidden=32, layers=1, max_positions=1024, tied=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 10.0
        model.lm_head.weight.mul_(0.01)
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = 5.0
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
