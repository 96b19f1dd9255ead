"""How much our trainer wrappers cost over plain TRL (target: ratio <= 1.05).

For SFT, reward model and DPO, the same data, model and TRL arguments go (a) through our function
(`train_sft`, `train_reward`, `train_dpo`: reporter callback, held-out split, final evaluation,
atomic save with the run config) and (b) straight into the TRL trainer (load, construct, train,
evaluate, `save_model`). Both are timed end to end in the same process, after one warm-up run, and the best
of `--repeats` runs is kept for each.

    .venv/bin/python bench/trl_overhead.py                 # the tiny test model (fast)
    .venv/bin/python bench/trl_overhead.py --model-dir /path/to/causal-lm --steps 10 --batch-size 4
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
from transformers import PrinterCallback, set_seed  # noqa: E402
from trl import DPOTrainer, RewardTrainer, SFTTrainer  # noqa: E402

from app.schemas.training import DPOConfig, RewardConfig, SFTConfig  # noqa: E402
from worker.training import dpo, reward, sft  # noqa: E402
from worker.training._trl import load_dtype, lora_config, split_by_prompt  # noqa: E402
from worker.training.base import ModelRef, PrintReporter  # noqa: E402
from worker.training.models import load_policy, load_reward_model, load_tokenizer  # noqa: E402

WORDS = "red blue green yellow apple cherry grape lemon mango pear plum cat dog bird fish tree".split()


def make_data(n_prompts: int, per_prompt: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    demos, pairs = [], []
    for prompt_id in range(n_prompts):
        messages = [{"role": "user", "content": f"tell me about the {rng.choice(WORDS)}"}]
        for _ in range(per_prompt):
            rejected = [rng.choice(WORDS) for _ in range(6)]
            chosen = list(rejected)
            chosen[rng.randrange(6)] = "banana"
            pairs.append(
                {
                    "prompt_id": prompt_id,
                    "messages": messages,
                    "chosen": " ".join(chosen),
                    "rejected": " ".join(rejected),
                    "margin": 1.0,
                }
            )
        demos.append({"messages": messages, "response": " ".join(rng.choice(WORDS) for _ in range(8))})
    return demos, pairs


def plain_sft(config: SFTConfig, base: ModelRef, demos: list[dict], out: Path) -> None:
    set_seed(config.seed)
    tokenizer = load_tokenizer(base)
    model = load_policy(base, tokenizer, dtype=load_dtype(config))
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(
            model=model,
            args=sft.sft_args(config, Path(scratch)),
            train_dataset=sft.demos_to_dataset(demos),
            processing_class=tokenizer,
            peft_config=lora_config(config, "CAUSAL_LM"),
        )
        trainer.remove_callback(PrinterCallback)  # ours does the same: console printing is not compared
        trainer.train()
        trainer.save_model(str(out))


def plain_reward(config: RewardConfig, base: ModelRef, pairs: list[dict], out: Path) -> None:
    set_seed(config.seed)
    tokenizer = load_tokenizer(base)
    model = load_reward_model(base, tokenizer, dtype=load_dtype(config))
    train, held = split_by_prompt(pairs, config.eval_fraction, config.seed)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = RewardTrainer(
            model=model,
            args=reward.reward_args(config, Path(scratch)),
            train_dataset=reward.pairs_to_dataset(train, use_margin=config.use_margin),
            eval_dataset=reward.pairs_to_dataset(held, use_margin=config.use_margin),
            processing_class=tokenizer,
            peft_config=lora_config(config, "SEQ_CLS"),
        )
        trainer.remove_callback(PrinterCallback)  # ours does the same: console printing is not compared
        trainer.train()
        trainer.evaluate()
        trainer.save_model(str(out))


def plain_dpo(config: DPOConfig, base: ModelRef, pairs: list[dict], out: Path) -> None:
    set_seed(config.seed)
    tokenizer = load_tokenizer(base)
    model = load_policy(base, tokenizer, dtype=load_dtype(config))
    ref = None if config.lora_r else load_policy(base, tokenizer, dtype=load_dtype(config))
    train, held = split_by_prompt(pairs, config.eval_fraction, config.seed)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = DPOTrainer(
            model=model,
            ref_model=ref,
            args=dpo.dpo_args(config, Path(scratch)),
            train_dataset=dpo.pairs_to_dataset(train),
            eval_dataset=dpo.pairs_to_dataset(held),
            processing_class=tokenizer,
            peft_config=lora_config(config, "CAUSAL_LM"),
        )
        trainer.remove_callback(PrinterCallback)  # ours does the same: console printing is not compared
        trainer.train()
        trainer.evaluate()
        trainer.save_model(str(out))


def best_time(run: Callable[[Path], None], workdir: Path, repeats: int) -> float:
    times = []
    for i in range(repeats):
        out = workdir / f"run-{time.monotonic_ns()}-{i}"
        start = time.perf_counter()
        run(out)
        times.append(time.perf_counter() - start)
        shutil.rmtree(out, ignore_errors=True)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, help="a causal LM directory (default: a tiny test model)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant; the best is kept")
    parser.add_argument("--lora-r", type=int, default=0)
    parser.add_argument("--only", choices=["sft", "reward", "dpo"], action="append")
    parser.add_argument("--smoke", action="store_true", help="one step of batch 2, once: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.batch_size, args.repeats = 1, 2, 1
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory(prefix="trl-overhead-") as tmp:
        workdir = Path(tmp)
        if args.model_dir is None:
            from tests.utils.tiny_models import make_tiny_causal_lm

            base = ModelRef(str(make_tiny_causal_lm(workdir / "tiny")))
        else:
            base = ModelRef(str(args.model_dir))
        demos, pairs = make_data(n_prompts=args.steps * args.batch_size // 2 + 8, per_prompt=2)
        common = dict(batch_size=args.batch_size, max_steps=args.steps, max_length=128, lora_r=args.lora_r)
        sft_config, rm_config, dpo_config = SFTConfig(**common), RewardConfig(**common), DPOConfig(**common)
        quiet = PrintReporter()
        cases: dict[str, tuple[Callable[[Path], object], Callable[[Path], None]]] = {
            "sft": (
                lambda o: sft.train_sft(
                    config=sft_config, base=base, demos=demos, output_dir=o, reporter=quiet
                ),
                lambda o: plain_sft(sft_config, base, demos, o),
            ),
            "reward": (
                lambda o: reward.train_reward(
                    config=rm_config, base=base, pairs=pairs, output_dir=o, reporter=quiet
                ),
                lambda o: plain_reward(rm_config, base, pairs, o),
            ),
            "dpo": (
                lambda o: dpo.train_dpo(
                    config=dpo_config, base=base, pairs=pairs, output_dir=o, reporter=quiet
                ),
                lambda o: plain_dpo(dpo_config, base, pairs, o),
            ),
        }
        print(
            f"model={args.model_dir or 'tiny'} steps={args.steps} batch={args.batch_size} "
            f"lora_r={args.lora_r} repeats={args.repeats}"
        )
        print(f"{'method':<8} {'plain TRL (s)':>14} {'ours (s)':>10} {'ratio':>7}")
        for name, (ours, plain) in cases.items():
            if args.only and name not in args.only:
                continue
            best_time(plain, workdir, 1)  # warm-up: imports, kernels, file cache
            t_plain = best_time(plain, workdir, args.repeats)
            t_ours = best_time(ours, workdir, args.repeats)  # type: ignore[arg-type]
            flag = "" if t_ours / t_plain <= 1.05 else "  > 1.05"
            print(f"{name:<8} {t_plain:>14.2f} {t_ours:>10.2f} {t_ours / t_plain:>7.3f}{flag}", flush=True)


if __name__ == "__main__":
    main()
