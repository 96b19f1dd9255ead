"""Reward model on rankings: all pairs of one ranking in one batch element (InstructGPT), against
the plain expansion of the same pairs, on data with a known order; and rankings of K=4 against
pairs at the same simulated rater time."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from app.oracles import load_oracle
from app.schemas.training import RewardConfig
from app.services.preferences.rankings import expand
from app.simulate import decide, decide_ranking, reading_minutes
from tests.worker.conftest import FILLER, TARGET, chat_ids, make_prompts
from worker.training.base import ModelRef, PrintReporter
from worker.training.models import load_reward_model, load_tokenizer
from worker.training.ranking_batches import GroupCollator, group_pairs, grouped_loss
from worker.training.reward import train_reward

K = 4


def make_ranking_pairs(n_prompts: int, seed: int, length: int = 5) -> list[dict[str, Any]]:
    """Per prompt, K completions with 0..K-1 target words (more is better): a known order, given
    as the K(K-1)/2 pairs it implies, sharing the prompt's group key."""
    rng = random.Random(seed)
    pairs = []
    for prompt_id, messages in enumerate(make_prompts(n_prompts, seed)):
        base = [rng.choice(FILLER) for _ in range(length)]
        texts = []
        for score in range(K):
            words = list(base)
            for at in rng.sample(range(length), score):
                words[at] = TARGET
            texts.append((score, " ".join(words)))
        for (s1, t1), (s2, t2) in itertools.combinations(texts, 2):
            chosen, rejected = (t1, t2) if s1 > s2 else (t2, t1)
            pairs.append(
                {"prompt_id": prompt_id, "messages": messages, "chosen": chosen, "rejected": rejected,
                 "margin": 1.0, "group": f"ranking:{prompt_id}"}
            )  # fmt: skip
    return pairs


def test_groups_keep_one_copy_of_each_completion_and_pairs_as_indices() -> None:
    rows = [
        {"chosen_ids": [1, 2], "rejected_ids": [3], "group": "r1", "margin": 1.0},
        {"chosen_ids": [1, 2], "rejected_ids": [4, 4], "group": "r1", "margin": 2.0},
        {"chosen_ids": [3], "rejected_ids": [4, 4], "group": "r1", "margin": 1.0},
        {"chosen_ids": [5], "rejected_ids": [6], "group": None, "margin": 1.0},
        {"chosen_ids": [7], "rejected_ids": [8], "group": None, "margin": 1.0},
    ]
    groups = group_pairs(rows, use_margin=True)
    assert len(groups) == 3  # one ranking, two single pairs
    assert groups[0] == {
        "seqs": [[1, 2], [3], [4, 4]], "winners": [0, 0, 1], "losers": [1, 2, 2], "margins": [1.0, 2.0, 1.0],
        "ties": [False, False, False],
    }  # fmt: skip
    batch = GroupCollator(pad_token_id=0)(groups[:2])
    assert batch["input_ids"].tolist() == [[1, 2], [3, 0], [4, 4], [5, 0], [6, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0], [1, 1], [1, 0], [1, 0]]
    assert batch["winners"].tolist() == [0, 0, 1, 3] and batch["losers"].tolist() == [1, 2, 2, 4]
    assert batch["pair_group"].tolist() == [0, 0, 0, 1]


def test_the_grouped_loss_averages_each_group_over_its_pairs() -> None:
    rewards = torch.tensor([2.0, 1.0, 0.0, 0.5, -0.5])
    loss = grouped_loss(
        rewards,
        torch.tensor([0, 0, 1, 3]),
        torch.tensor([1, 2, 2, 4]),
        torch.zeros(4),
        torch.tensor([0, 0, 0, 1]),
    )
    nll = lambda d: -torch.nn.functional.logsigmoid(torch.tensor(d))  # noqa: E731
    ranking = (nll(1.0) + nll(2.0) + nll(1.0)) / 3
    assert loss.item() == pytest.approx(((ranking + nll(1.0)) / 2).item())


def test_per_prompt_batching_learns_the_order_like_the_plain_expansion(tiny_base, tmp_path: Path) -> None:
    pairs = make_ranking_pairs(n_prompts=60, seed=0)  # 360 pairs from 60 rankings
    results = {}
    for batching in ("per_prompt", "expanded"):
        # the same pairs per step: 4 rankings of 6 pairs, or 24 pairs drawn apart
        batch = 4 if batching == "per_prompt" else 4 * K * (K - 1) // 2
        config = RewardConfig(
            learning_rate=1e-3, batch_size=batch, max_steps=25, max_length=64, eval_fraction=0.2,
            seed=0, ranking_batching=batching,
        )  # fmt: skip
        reporter = PrintReporter()
        result = train_reward(
            config=config, base=tiny_base, pairs=pairs, output_dir=tmp_path / batching, reporter=reporter
        )
        results[batching] = result.metrics
        losses = reporter.series("loss/train")
        assert len(losses) == config.max_steps
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, (batching, losses)
    print(
        "held-out pairwise accuracy on a known order (K=4, 12 held-out prompts, 72 pairs): "
        f"per_prompt {results['per_prompt']['eval/accuracy']:.3f}, "
        f"expanded {results['expanded']['eval/accuracy']:.3f}"
    )
    assert results["per_prompt"]["eval/pairs"] == results["expanded"]["eval/pairs"] == 72
    assert results["per_prompt"]["eval/accuracy"] >= 0.8, results
    assert results["expanded"]["eval/accuracy"] >= 0.8, results


# --- rankings vs pairs at the same simulated rater time ---------------------------------------

LENGTH = 6  # words per completion
NOISE = 0.2  # a pair's flip, a ranking's swap of two neighbours


def completion_pool(rng: random.Random) -> list[str]:
    """K completions of one prompt: the same filler words with 0..K-1 of them turned into the
    target (more is better, the order the oracle knows)."""
    base = [rng.choice(FILLER) for _ in range(LENGTH)]
    texts = []
    for count in range(K):
        words = list(base)
        for at in rng.sample(range(LENGTH), count):
            words[at] = TARGET
        texts.append(" ".join(words))
    rng.shuffle(texts)
    return texts


def simulated_labels(mode: str, minutes: float, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Training pairs that simulated raters give for `minutes` of reading: one pair (2
    completions shown) per prompt, or one ranking of K per prompt expanded by the rules
    (ties and both-bad pairs dropped, as by default). Returns the pairs and the tasks done."""
    oracle = load_oracle("app.oracles:prefers_word")  # counts the target word
    rng = random.Random(seed)
    shown = 2 if mode == "pairs" else K
    prompts = make_prompts(1000, seed)
    pairs: list[dict[str, Any]] = []
    spent, tasks = 0.0, 0
    while spent + reading_minutes(shown) <= minutes:
        messages, texts = prompts[tasks], completion_pool(rng)
        prompt = messages[-1]["content"]
        if mode == "pairs":
            left, right = rng.sample(texts, 2)
            pick = decide(oracle(prompt, left), oracle(prompt, right), rng=rng, noise=NOISE).pick
            chosen, rejected = (left, right) if pick < 0 else (right, left)
            implied = [(chosen, rejected, None)]
        else:
            answer = decide_ranking([oracle(prompt, t) for t in texts], rng=rng, noise=NOISE)
            group = f"ranking:{tasks}"
            implied = [
                (texts[p.i], texts[p.j], group) if p.choice == "A" else (texts[p.j], texts[p.i], group)
                for p, _ in expand(answer.ranks, answer.cutoff_rank)
                if p.choice != "tie" and not p.both_bad
            ]
        pairs += [
            {"prompt_id": tasks, "messages": messages, "chosen": c, "rejected": r, "margin": 1.0, "group": g}
            for c, r, g in implied
        ]
        spent += reading_minutes(shown)
        tasks += 1
    return pairs, tasks


@torch.no_grad()
def order_accuracy(model_dir: Path, base: Any, n_prompts: int, seed: int) -> float:
    """Share of all K(K-1)/2 pairs of fresh prompts' pools that the reward model orders as the
    oracle does (the completion with more target words scores higher)."""
    tokenizer = load_tokenizer(base)
    model = load_reward_model(ModelRef(str(model_dir)), tokenizer).eval()
    rng = random.Random(seed)
    right = total = 0
    for messages in make_prompts(n_prompts, seed):
        texts = completion_pool(rng)
        rewards = [
            model(
                input_ids=torch.tensor(
                    [chat_ids(tokenizer, [*messages, {"role": "assistant", "content": t}])]
                )
            )
            .logits[0, 0]
            .item()
            for t in texts
        ]
        for i, j in itertools.combinations(range(K), 2):
            better = texts[i].split().count(TARGET) > texts[j].split().count(TARGET)
            right += (rewards[i] > rewards[j]) == better
            total += 1
    return right / total


def test_rankings_of_four_beat_pairs_at_the_same_rater_minutes(tiny_base, tmp_path: Path) -> None:
    """8 simulated rater-minutes buy 8 pairs (2 completions read each) or 4 rankings of 4; two
    draws of the simulated labels, the same training budget (20 steps of 16 sequences)."""
    minutes = 8.0
    accuracy: dict[str, list[float]] = {"pairs": [], "rankings": []}
    for seed in (1, 2):
        for mode in ("pairs", "rankings"):
            pairs, tasks = simulated_labels(mode, minutes, seed=seed)
            assert tasks == (8 if mode == "pairs" else 4)
            # the same completions read per step: 8 pairs, or 4 rankings of 4
            config = RewardConfig(
                learning_rate=1e-3, batch_size=8 if mode == "pairs" else 4, max_steps=20, max_length=64,
                eval_fraction=0.0, seed=0, ranking_batching="expanded" if mode == "pairs" else "per_prompt",
            )  # fmt: skip
            result = train_reward(
                config=config, base=tiny_base, pairs=pairs, output_dir=tmp_path / f"{mode}{seed}",
                reporter=PrintReporter(),
            )  # fmt: skip
            accuracy[mode].append(order_accuracy(result.output_dir, tiny_base, n_prompts=30, seed=12345))
            figures = f"{tasks} tasks, {len(pairs)} training pairs, accuracy {accuracy[mode][-1]:.3f}"
            print(f"seed {seed}, {mode}: {figures}")
    mean = {mode: sum(values) / len(values) for mode, values in accuracy.items()}
    print(
        f"at {minutes:g} simulated rater-minutes, held-out pairwise accuracy (30 prompts x 6 pairs, "
        f"mean of 2 label draws): rankings of K=4 {mean['rankings']:.3f}, pairs {mean['pairs']:.3f}"
    )
    assert all(r >= p for r, p in zip(accuracy["rankings"], accuracy["pairs"], strict=True)), accuracy
    assert mean["rankings"] >= mean["pairs"] + 0.1, accuracy
    assert mean["rankings"] >= 0.9, accuracy


def test_a_reward_run_freezes_rankings_beside_judgments_and_trains_per_prompt(
    pg_factory, pg_url: str, tmp_path: Path
) -> None:
    """Through the runner: the snapshot holds the ranking judgments, the data builder expands them
    with each ranking's group, the per-prompt trainer takes them, and a retry freezes the same."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import (
        ModelKind,
        ModelVersion,
        RankingJudgment,
        RunKind,
        RunLog,
        SnapshotItemKind,
    )
    from app.services import runs
    from tests.utils.factories import make_project, make_user
    from tests.utils.rankings import make_ranking
    from tests.utils.tiny_models import make_tiny_causal_lm
    from tests.worker.conftest import run_to_end

    base_dir = make_tiny_causal_lm(tmp_path / "base", seed=0)
    rng = random.Random(3)
    with session_scope(pg_factory) as session:
        project = make_project(session, "ranked-run")
        rater = make_user(session, "ann")
        for n, messages in enumerate(make_prompts(12, seed=3)):
            texts = completion_pool(rng)
            ranking = make_ranking(session, project, messages[-1]["content"] + f" {n}", texts)
            counts = [t.split().count(TARGET) for t in texts]
            session.add(
                RankingJudgment(ranking_id=ranking.id, rater_id=rater.id, project_id=project.id,
                                ranks=[K - c for c in counts], display_order=list(range(K)))
            )  # fmt: skip
        base = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(base_dir))
        session.add(base)
        session.flush()
        base_id = base.id
    config = {"max_steps": 3, "batch_size": 2, "max_length": 64, "eval_fraction": 0.25,
              "ranking_batching": "per_prompt"}  # fmt: skip
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.reward, base_model_id=base_id, config=config)
    with pg_factory() as session:
        ranked = runs.snapshot_ids(session, run.id, SnapshotItemKind.ranking_judgment)
        assert len(ranked) == 12 and runs.snapshot_ids(session, run.id) == []
        assert run.snapshot_size == 12
        log = " | ".join(session.scalars(select(RunLog.message).where(RunLog.run_id == run.id)))
        assert "0 judgments and 12 ranking_judgments" in log
        assert "72 pairs from 0 judgments on 0 comparisons and 12 rankings (72 implied pairs)" in log
        assert "groups (rankings and single pairs) per epoch" in log
        again = runs.retry_run(session, run=session.merge(run), created_by_id=None)
        assert runs.snapshot_ids(session, again.id, SnapshotItemKind.ranking_judgment) == ranked
        session.rollback()
