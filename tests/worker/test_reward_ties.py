"""Ties carry information: the tie rules' losses against a hand computation, the rules keeping a
tie outcome as a flagged row, and a reward model that learns from ties what its few decisive
pairs cannot tell it (data with a known answer)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from app.schemas.training import RewardConfig
from app.services.preferences import PreferenceStats, RuleSet, Vote, decide
from tests.worker.conftest import FILLER, TARGET, make_prompts
from tests.worker.test_reward import scores
from worker.training.base import ModelRef, PrintReporter
from worker.training.ranking_batches import grouped_loss, pair_losses
from worker.training.reward import train_reward

DISTRACT = "moon"  # a word that does not matter (not in FILLER)


def test_the_davidson_and_half_losses_match_a_hand_computation() -> None:
    r_a, r_b, nu = 1.0, 0.0, 0.5
    # Davidson (1970) as written: P(a>b) = e^ra / (e^ra + e^rb + nu e^((ra+rb)/2)), P(tie) likewise
    z = math.exp(r_a) + math.exp(r_b) + nu * math.exp((r_a + r_b) / 2)
    win, tie = -math.log(math.exp(r_a) / z), -math.log(nu * math.exp((r_a + r_b) / 2) / z)
    assert (win, tie) == pytest.approx((0.5135, 1.7067), abs=1e-4)  # by hand: z = 4.5426
    diff = torch.tensor([r_a - r_b, r_a - r_b])
    log_nu = torch.tensor(math.log(nu))
    got = pair_losses(diff, torch.zeros(2), torch.tensor([False, True]), "davidson", log_nu)
    assert got.tolist() == pytest.approx([win, tie], rel=1e-6)
    # a tie as half a win each way: cross-entropy of sigmoid(d) against 0.5
    sig = 1 / (1 + math.exp(-(r_a - r_b)))
    half_tie = -(0.5 * math.log(sig) + 0.5 * math.log(1 - sig))
    got = pair_losses(diff, torch.zeros(2), torch.tensor([False, True]), "half", None)
    assert got.tolist() == pytest.approx([-math.log(sig), half_tie], rel=1e-6)
    # with nu -> 0 Davidson is Bradley-Terry; the margin shifts a decisive pair's d only
    tiny = pair_losses(diff[:1], torch.zeros(1), torch.tensor([False]), "davidson", torch.tensor(-30.0))
    assert tiny.item() == pytest.approx(-math.log(sig), rel=1e-6)
    shifted = pair_losses(diff, torch.ones(2), torch.tensor([False, True]), "davidson", log_nu)
    assert shifted[0].item() == pytest.approx(math.log(2 + nu), rel=1e-6)  # d - m = 0
    assert shifted[1].item() == pytest.approx(tie, rel=1e-6)
    # in the grouped loss a tie term is averaged with its group like any pair
    rewards = torch.tensor([1.0, 0.0, 0.3, 0.3])
    loss = grouped_loss(
        rewards, torch.tensor([0, 2]), torch.tensor([1, 3]), torch.zeros(2), torch.tensor([0, 1]),
        torch.tensor([False, True]), "davidson", log_nu,
    )  # fmt: skip
    assert loss.item() == pytest.approx((win - math.log(nu / (2 + nu))) / 2, rel=1e-6)


def vote(n: int, choice: str) -> Vote:
    strength = 0 if choice == "tie" else 1
    return Vote(n, n, choice, strength, False, [], "", 0, True, "human", datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("aggregation", ["majority", "mean_strength", "per_rater"])
def test_a_tie_outcome_is_dropped_or_kept_as_a_flagged_row(aggregation: str) -> None:
    votes = [vote(1, "tie"), vote(2, "tie")]
    dropped = PreferenceStats()
    assert decide(votes, rules=RuleSet(aggregation), stats=dropped, comparison_id=7, prompt_id=3) == []  # type: ignore[arg-type]
    kept = PreferenceStats()
    rows = decide(votes, rules=RuleSet(aggregation, keep_ties=True), stats=kept, comparison_id=7, prompt_id=3)  # type: ignore[arg-type]
    assert len(rows) == (2 if aggregation == "per_rater" else 1) == kept.ties_kept
    assert all(row.tie and row.winner == "A" and row.margin == 0 and row.agreement == 1 for row in rows)
    # a split vote is no tie, and a decisive outcome stays decisive
    split = [vote(1, "A"), vote(2, "B")]
    if aggregation != "per_rater":
        assert (
            decide(
                split, rules=RuleSet(aggregation, keep_ties=True), stats=kept, comparison_id=8, prompt_id=3
            )
            == []
        )  # type: ignore[arg-type]
    won = decide(
        [vote(1, "B"), vote(2, "tie")],
        rules=RuleSet(aggregation, keep_ties=True),
        stats=kept,
        comparison_id=9,
        prompt_id=3,
    )  # type: ignore[arg-type]
    assert [row.tie for row in won] == ([False, True] if aggregation == "per_rater" else [False])
    assert won[0].winner == "B"


def confounded_pairs(seed: int, length: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Known answer: the target word is what matters, the distractor never does. The few decisive
    training pairs confound the two (the winner has both, the loser neither); many ties pair
    completions of equal quality that differ by the distractor alone. Held out: the target against
    the distractor, which only the ties tell apart."""
    rng = random.Random(seed)

    def text(*marks: str) -> str:
        words = [rng.choice(FILLER) for _ in range(length)]
        for at, word in zip(rng.sample(range(length), len(marks)), marks, strict=True):
            words[at] = word
        return " ".join(words)

    prompts = make_prompts(130, seed)
    train: list[dict[str, Any]] = []
    for pid, messages in enumerate(prompts[:100]):
        if pid < 16:
            chosen, rejected, tie = text(TARGET, DISTRACT), text(), False
        else:
            marks = (TARGET,) if pid % 2 else ()
            chosen, rejected, tie = text(*marks, DISTRACT), text(*marks), True
            if rng.random() < 0.5:
                chosen, rejected = rejected, chosen
        train.append({"prompt_id": pid, "messages": messages, "chosen": chosen, "rejected": rejected,
                      "margin": 0.0, "tie": tie})  # fmt: skip
    held_out = [
        {"prompt_id": 100 + i, "messages": m, "chosen": text(TARGET), "rejected": text(DISTRACT)}
        for i, m in enumerate(prompts[100:])
    ]
    return train, held_out


def test_ties_teach_what_the_few_decisive_pairs_cannot(tiny_base, tmp_path: Path) -> None:
    train, held_out = confounded_pairs(seed=0)
    accuracy, logs = {}, {}
    for rule in ("drop", "half", "davidson"):
        config = RewardConfig(
            learning_rate=1e-3, batch_size=16, max_steps=40, max_length=64, eval_fraction=0.0, seed=0,
            tie_rule=rule,
        )  # fmt: skip
        reporter = PrintReporter()
        result = train_reward(
            config=config, base=tiny_base, pairs=train, output_dir=tmp_path / rule, reporter=reporter
        )
        margin = scores(ModelRef(str(result.output_dir)), tiny_base, held_out, "chosen") - scores(
            ModelRef(str(result.output_dir)), tiny_base, held_out, "rejected"
        )
        accuracy[rule] = float((margin > 0).float().mean())
        logs[rule] = (reporter.lines, result.metrics)
    print(
        "held-out accuracy, target against distractor (30 pairs, 16 decisive + 84 tied for training):",
        accuracy,
    )
    print("Davidson nu learned:", logs["davidson"][1].get("tie/nu"))
    # measured: drop 0.77 (it cannot tell the two words apart), half 1.0, davidson 1.0
    assert accuracy["half"] >= accuracy["drop"] + 0.15, accuracy
    assert accuracy["davidson"] >= accuracy["drop"] + 0.15, accuracy
    assert accuracy["half"] >= 0.95 and accuracy["davidson"] >= 0.95, accuracy
    assert logs["davidson"][1]["tie/nu"] > 0
    assert logs["drop"][1]["data/ties"] == 0 and logs["half"][1]["data/ties"] == 84
    assert any("tie rule half: 84 of the training pairs are ties" in line for line in logs["half"][0])


@pytest.mark.parametrize("tie_rule", ["davidson", "drop"])
def test_a_reward_run_keeps_ties_by_its_rule_and_says_how_many(
    pg_factory, pg_url: str, tmp_path: Path, tie_rule: str
) -> None:
    """Through the runner: the rule reaches the data builder, the trainer and the run's log."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import ModelKind, ModelVersion, RunKind, RunLog
    from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user
    from tests.utils.tiny_models import make_tiny_causal_lm
    from tests.worker.conftest import run_to_end

    base_dir = make_tiny_causal_lm(tmp_path / "base", seed=0)
    with session_scope(pg_factory) as session:
        project = make_project(session, "tied")
        rater = make_user(session, "ann")
        for n, messages in enumerate(make_prompts(8, seed=1)):
            comparison = make_comparison(session, project, messages, f"{TARGET} red {n}", f"blue green {n}")
            make_human_judgment(session, comparison, rater, "A" if n < 3 else "tie")
        base = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(base_dir))
        session.add(base)
        session.flush()
        base_id = base.id
    config = {"max_steps": 2, "batch_size": 4, "max_length": 64, "eval_fraction": 0.0, "tie_rule": tie_rule}
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.reward, base_model_id=base_id, config=config)
    with pg_factory() as session:
        log = " | ".join(session.scalars(select(RunLog.message).where(RunLog.run_id == run.id)))
    if tie_rule == "drop":
        assert "3 pairs from 8 judgments on 8 comparisons; 5 comparisons gave no pair" in log
        assert "tie rule drop: 0 of the training pairs are ties" in log
        assert run.summary["data/ties"] == 0 and "tie/nu" not in run.summary
    else:
        assert "8 pairs from 8 judgments on 8 comparisons; 5 of the pairs are ties" in log
        assert "tie rule davidson: 5 of the training pairs are ties" in log and "Davidson nu" in log
        assert run.summary["data/ties"] == 5 and run.summary["tie/nu"] > 0
