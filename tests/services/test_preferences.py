"""The aggregation rules: hand-made vote patterns and the rows each rule must produce."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import make_engine, make_sessionmaker
from app.models import Completion, Judgment, JudgmentSource, Role
from app.services.preferences.postgres import postgres_rows
from app.services.preferences.rows import preference_rows, sqlalchemy_rows
from app.services.preferences.rules import JudgmentFilter, PreferenceStats, RuleSet
from tests.utils.factories import make_model_version, make_pair, make_project, make_user

# A vote: (choice, strength) or (choice, strength, {"both_bad": True, ...}).
PATTERNS: dict[str, list[tuple]] = {
    "unanimous": [("A", 2), ("A", 2), ("A", 1)],
    "majority_b": [("B", 1), ("B", 2), ("A", 2)],
    "split": [("A", 2), ("B", 1)],
    "tie": [("tie", 0), ("tie", 0)],
    "tie_and_a": [("A", 1), ("tie", 0)],
    "both_bad": [("A", 1, {"both_bad": True}), ("B", 1)],
    "gold": [("B", 1), ("B", 1), ("A", 2)],  # gold answer: A
    "flagged": [("A", 1, {"flags": ["unsafe"]}), ("B", 2)],
}

# (aggregation, options) -> {pattern: (winner, margin, agreement, votes)}; absent = no row.
EXPECTED = {
    ("majority", ()): {
        "unanimous": ("A", 5 / 3, 1.0, 3),
        "majority_b": ("B", 2 / 3 * 1.5, 2 / 3, 3),
        "tie_and_a": ("A", 0.5, 0.5, 2),
        "both_bad": ("B", 1.0, 1.0, 1),
        "gold": ("A", 2 / 3, 1 / 3, 3),  # the gold answer wins against the votes
        # "split" and "flagged" (1 A vs 1 B) are split votes: dropped; "tie": a tie, dropped.
    },
    ("mean_strength", ()): {
        "unanimous": ("A", 5 / 3, 1.0, 3),
        "majority_b": ("B", 1 / 3, 2 / 3, 3),
        "split": ("A", 0.5, 0.5, 2),
        "tie_and_a": ("A", 0.5, 0.5, 2),
        "both_bad": ("B", 1.0, 1.0, 1),
        "gold": ("A", 2 / 3, 1 / 3, 3),
        "flagged": ("B", 0.5, 0.5, 2),
    },
    ("majority", ("ties=ignore", "include_both_bad", "exclude_flags")): {
        "unanimous": ("A", 5 / 3, 1.0, 3),
        "majority_b": ("B", 1.0, 2 / 3, 3),
        "tie_and_a": ("A", 1.0, 1.0, 1),
        "gold": ("A", 2 / 3, 1 / 3, 3),
        "flagged": ("B", 2.0, 1.0, 1),
    },
    ("majority", ("min_agreement",)): {
        "unanimous": ("A", 5 / 3, 1.0, 3),
        "majority_b": ("B", 1.0, 2 / 3, 3),
        "both_bad": ("B", 1.0, 1.0, 1),
    },
}
# Per rater: (pattern, winner, margin, agreement) for every row, in order.
EXPECTED_PER_RATER = [
    ("unanimous", "A", 2.0, 1.0), ("unanimous", "A", 2.0, 1.0), ("unanimous", "A", 1.0, 1.0),
    ("majority_b", "B", 1.0, 2 / 3), ("majority_b", "B", 2.0, 2 / 3), ("majority_b", "A", 2.0, 1 / 3),
    ("split", "A", 2.0, 0.5), ("split", "B", 1.0, 0.5),
    ("tie_and_a", "A", 1.0, 0.5),
    ("both_bad", "B", 1.0, 1.0),
    ("gold", "B", 1.0, 2 / 3), ("gold", "B", 1.0, 2 / 3), ("gold", "A", 2.0, 1 / 3),
    ("flagged", "A", 1.0, 0.5), ("flagged", "B", 2.0, 0.5),
]  # fmt: skip


def seed(session: Session) -> tuple[int, dict[int, str]]:
    project = make_project(session, "votes", flags=["unsafe"])
    raters = [make_user(session, f"rater{i}", Role.rater) for i in range(3)]
    names: dict[int, str] = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number, (name, votes) in enumerate(PATTERNS.items()):
        pair = make_pair(
            session, project, f"prompt {name}", f"answer A {name}", f"answer B {name}",
            gold="A" if name == "gold" else None,
        )  # fmt: skip
        names[pair.id] = name
        for rater, vote in zip(raters, votes, strict=False):
            extra = vote[2] if len(vote) > 2 else {}
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=rater.id,
                    project_id=project.id,
                    choice=vote[0],
                    strength=vote[1],
                    a_on_left=True,
                    both_bad=extra.get("both_bad", False),
                    flags=extra.get("flags", []),
                    created_at=start + timedelta(hours=number),
                    source=JudgmentSource.human,
                )  # fmt: skip
            )
    session.flush()
    return project.id, names


OPTIONS = {
    "ties=ignore": {"ties": "ignore"},
    "include_both_bad": {"include_both_bad": True},
    "exclude_flags": {"exclude_flags": ["unsafe"]},
    "min_agreement": {"min_agreement": 0.6},
}


@pytest.mark.parametrize(("aggregation", "options"), list(EXPECTED))
def test_aggregated_rows_follow_the_rules(
    session: Session, aggregation: str, options: tuple[str, ...]
) -> None:
    project_id, names = seed(session)
    kwargs = {k: v for option in options for k, v in OPTIONS[option].items()}
    rows = list(preference_rows(session, project_id=project_id, aggregation=aggregation, **kwargs))
    got = {names[r.comparison_id]: (r.winner, r.margin, r.agreement, r.votes) for r in rows}
    expected = EXPECTED[(aggregation, options)]
    assert set(got) == set(expected)
    for name, (winner, margin, agreement, votes) in expected.items():
        assert got[name][0] == winner, name
        assert got[name][1] == pytest.approx(margin, abs=1e-5), name
        assert got[name][2] == pytest.approx(agreement, abs=1e-5), name
        assert got[name][3] == votes, name
    for row in rows:  # the texts follow the winner
        assert row.chosen == f"answer {row.winner} {names[row.comparison_id]}"
        assert row.messages == [{"role": "user", "content": f"prompt {names[row.comparison_id]}"}]


def test_per_rater_rows_are_the_raw_judgments(session: Session) -> None:
    project_id, names = seed(session)
    stats = PreferenceStats()
    rows = list(preference_rows(session, project_id=project_id, aggregation="per_rater", stats=stats))
    got = [(names[r.comparison_id], r.winner, r.margin, pytest.approx(r.agreement, abs=1e-5)) for r in rows]
    assert got == [(n, w, m, pytest.approx(a, abs=1e-5)) for n, w, m, a in EXPECTED_PER_RATER]
    assert all(len(r.judgment_ids) == 1 for r in rows)
    assert stats.dropped["tie_votes"] == 3 and stats.dropped["both_bad"] == 1


def test_drop_reasons_are_counted(session: Session) -> None:
    project_id, _ = seed(session)
    stats = PreferenceStats()
    rows = list(preference_rows(session, project_id=project_id, stats=stats))
    assert stats.rows == len(rows) == 5
    assert stats.dropped == {"split": 2, "tie": 1, "both_bad": 1}
    assert stats.judgments_read == sum(len(v) for v in PATTERNS.values())


def test_kept_ties_are_flagged_rows_and_the_rest_is_unchanged(session: Session) -> None:
    project_id, names = seed(session)
    dropped = list(preference_rows(session, project_id=project_id))
    stats = PreferenceStats()
    kept = list(preference_rows(session, project_id=project_id, keep_ties=True, stats=stats))
    ties = [r for r in kept if r.tie]
    assert [(names[r.comparison_id], r.winner, r.margin, r.agreement, r.votes) for r in ties] == [
        ("tie", "A", 0.0, 1.0, 2)
    ]
    assert ties[0].chosen == "answer A tie" and ties[0].rejected == "answer B tie"
    assert [r.comparison_id for r in kept if not r.tie] == [r.comparison_id for r in dropped]
    assert stats.ties_kept == 1 and stats.dropped == {"split": 2, "both_bad": 1}
    per_rater = list(preference_rows(session, project_id=project_id, aggregation="per_rater", keep_ties=True))
    assert sum(r.tie for r in per_rater) == 3  # the tie pattern's two votes and tie_and_a's one


def test_filters_select_judgments_before_aggregation(session: Session) -> None:
    project_id, names = seed(session)
    rows = list(preference_rows(session, project_id=project_id, gold="only"))
    assert [names[r.comparison_id] for r in rows] == ["gold"]
    assert "gold" not in {
        names[r.comparison_id] for r in preference_rows(session, project_id=project_id, gold="exclude")
    }
    assert list(preference_rows(session, project_id=project_id, label_source="ai")) == []
    # Date range: the patterns were judged an hour apart, in order.
    late = list(
        preference_rows(session, project_id=project_id, date_from=datetime(2026, 1, 1, 5, tzinfo=UTC))
    )
    assert {names[r.comparison_id] for r in late} == {"both_bad", "gold"}  # "flagged" is split
    # Only the first rater: every comparison is unanimous.
    first = session.scalar(select(Judgment.rater_id).order_by(Judgment.id))
    solo = list(preference_rows(session, project_id=project_id, rater_ids=[first]))
    assert all(r.votes == 1 for r in solo)
    assert all(r.agreement == 1.0 for r in solo if r.kind == "regular")  # gold: the known answer rules


def test_a_snapshot_of_judgment_ids_is_respected(session: Session) -> None:
    project_id, names = seed(session)
    all_rows = list(preference_rows(session, project_id=project_id, aggregation="per_rater"))
    chosen = [all_rows[0].judgment_ids[0], all_rows[5].judgment_ids[0]]
    rows = list(preference_rows(session, project_id=project_id, aggregation="per_rater", judgment_ids=chosen))
    assert [r.judgment_ids[0] for r in rows] == chosen
    assert list(preference_rows(session, project_id=project_id, judgment_ids=[])) == []


# --- parity: the SQLAlchemy row path and the PostgreSQL row path give the same rows ------------

RULE_SETS = [
    RuleSet(aggregation, ties, include_both_bad, min_agreement)
    for aggregation in ("majority", "mean_strength", "per_rater")
    for ties in ("drop", "ignore")
    for include_both_bad in (False, True)
    for min_agreement in (0.0, 0.6)
] + [RuleSet(aggregation, keep_ties=True) for aggregation in ("majority", "mean_strength", "per_rater")]


def seed_random(session: Session, rng: random.Random) -> int:
    """Many comparisons with random votes: choices, strengths, both bad, flags, gold and resolved."""
    project = make_project(session, "random votes", flags=["unsafe", "off-topic"])
    raters = [make_user(session, f"voter{i}", Role.rater) for i in range(6)]
    base = make_model_version(session, "random-base")
    tuned = make_model_version(
        session, "random-dpo", parent=make_model_version(session, "random-sft", parent=base)
    )
    for number in range(120):
        gold = rng.choice([None] * 6 + ["A", "B", "tie"])
        pair = make_pair(session, project, f"prompt {number}", f"a {number}", f"b {number}", gold=gold)
        # a third of the pairs were sampled by registered versions (one side named at import too)
        if number % 3 == 0:
            side_a, side_b = (
                session.get(Completion, pair.completion_a_id),
                session.get(Completion, pair.completion_b_id),
            )
            assert side_a is not None and side_b is not None
            side_a.model_version_id, side_b.model_version_id = tuned.id, base.id
            side_b.model_name = "imported-name" if number % 2 else None
        if gold is None and rng.random() < 0.1:
            pair.resolved_choice = rng.choice(["A", "B", "tie"])
        for rater in rng.sample(raters, rng.randint(1, len(raters))):
            choice = rng.choice(["A", "B", "tie"])
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=rater.id,
                    project_id=project.id,
                    choice=choice,
                    strength=0 if choice == "tie" else rng.choice([1, 2]),
                    a_on_left=rng.random() < 0.5,
                    both_bad=rng.random() < 0.15,
                    flags=rng.choice([[], [], [], ["unsafe"], ["off-topic"], ["unsafe", "off-topic"]]),
                    source=JudgmentSource.human,
                )  # fmt: skip
            )
    session.flush()
    return project.id


def _labels(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r.comparison_id, r.prompt_id, r.kind, r.gold_choice, r.winner, r.margin, r.agreement, r.votes,
         r.judgment_ids, r.prompt_hash, r.messages, r.chosen, r.rejected,
         r.chosen_side.completion_id, r.rejected_side.completion_id, r.chosen_side.sampling,
         r.chosen_side.model, r.chosen_side.model_version_name, r.rejected_side.model,
         r.rejected_side.model_version_name)
        for r in rows
    ]  # fmt: skip


def test_both_row_paths_give_the_same_rows(pg_url: str) -> None:
    """The same votes through the SQLAlchemy path (SQLite's) and the psycopg path (PostgreSQL's),
    under every rule set and a few filters: the same rows, texts and drop counts."""
    engine = make_engine(pg_url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            seed(session)
            project_id = seed_random(session, random.Random(7))
            ids = sorted(session.scalars(select(Judgment.id).where(Judgment.project_id == project_id)))
            selections = [
                JudgmentFilter(),
                JudgmentFilter(exclude_flags=frozenset({"unsafe"}), gold="exclude"),
                JudgmentFilter(judgment_ids=frozenset(ids[::3]), gold="only"),
            ]
            compared = 0
            for rules in RULE_SETS:
                for selection in selections:
                    results = []
                    for path in (sqlalchemy_rows, postgres_rows):
                        stats = PreferenceStats()
                        rows = path(
                            session, project_id=project_id, rules=rules, selection=selection, stats=stats
                        )
                        results.append((_labels(list(rows)), stats))
                    (generic, generic_stats), (pg, pg_stats) = results
                    assert pg == generic, (rules, selection)
                    assert pg_stats == generic_stats, (rules, selection)
                    compared += len(generic)
            assert compared > 1000
    finally:
        engine.dispose()
