"""Importing rankings: K completions per prompt (with their models and an optional gold order),
validated whole, stored once, completions reused by text; the rankings are then served to raters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Comparison, ComparisonKind, Completion, Prompt, Ranking
from app.services.importing.schema import ImportFailed, ImportKind
from app.services.importing.store import import_file
from app.services.rating.ranking import claim_next_ranking, ranking_view
from tests.utils.factories import make_pair, make_project, make_user


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def row(prompt: str, *texts: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "completions": list(texts), **extra}


def stored(
    session: Session,
) -> list[tuple[str, list[str], list[str | None], ComparisonKind, list[int] | None]]:
    """(prompt, texts, models, kind, gold ranks) of every ranking, by prompt."""
    out = []
    for ranking in session.scalars(select(Ranking).order_by(Ranking.id)):
        prompt = session.get(Prompt, ranking.prompt_id)
        assert prompt is not None
        completions = [session.get(Completion, cid) for cid in ranking.completion_ids]
        out.append(
            (
                prompt.messages[-1]["content"],
                [c.text for c in completions if c is not None],
                [c.model_name for c in completions if c is not None],
                ranking.kind,
                ranking.gold_ranks,
            )
        )
    return sorted(out, key=lambda ranking: ranking[0])


def test_rankings_with_models_and_gold_are_stored_in_file_order(session: Session) -> None:
    project = make_project(session, "r", rank_k=4)
    data = jsonl(
        row("q1", "a", "b", "c", "d", models=["m1", None, "m2", "m1"]),
        row("q2", "w", "x", "y", "z", gold_ranks=[2, 1, 3, 3]),
    )
    report = import_file(session, project=project, kind=ImportKind.rankings, filename="r.jsonl", data=data)
    assert (report.rows, report.created, report.created_prompts) == (2, 2, 2)
    assert "2 rankings created" in report.summary
    assert stored(session) == [
        ("q1", ["a", "b", "c", "d"], ["m1", None, "m2", "m1"], ComparisonKind.regular, None),
        ("q2", ["w", "x", "y", "z"], [None] * 4, ComparisonKind.gold, [2, 1, 3, 3]),
    ]
    # Served like any ranking: a rater claims the regular one and sees its four texts.
    rater = make_user(session, "rita")
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    assert assignment is not None
    assert sorted(r.text for r in ranking_view(session, assignment).responses) == ["a", "b", "c", "d"]


def test_duplicates_and_reused_completions(session: Session) -> None:
    project = make_project(session, "r", rank_k=3)
    make_pair(session, project, "q1", "a", "b")  # the prompt and two of the texts exist already
    data = jsonl(row("q1", "a", "b", "c"), row("q1", "c", "b", "a"), row("q2", "a", "b", "c"))
    report = import_file(session, project=project, kind="rankings", filename="r.jsonl", data=data)
    assert (report.created, report.created_prompts) == (2, 1)
    assert [str(d) for d in report.duplicates] == ["line 2: duplicate of line 1"]
    # q1's completions a and b are the pair's; only c is new for q1; q2's three are new.
    assert session.scalar(select(func.count()).select_from(Completion)) == 2 + 1 + 3
    assert session.scalar(select(func.count()).select_from(Comparison)) == 1
    again = import_file(session, project=project, kind="rankings", filename="r.jsonl", data=data)
    assert again.created == 0 and len(again.duplicates) == 3


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"completions": ["a", "b", "c"]}, "completions", "this project ranks 4 at a time"),
        ({"completions": ["a", "b", "c", "a"]}, "completions", "completion 4 repeats completion 1"),
        ({"completions": ["a", "", "c", "d"]}, "completions", "completion 2 must be a non-empty string"),
        ({"completions": "a, b, c, d"}, "completions", "must be a JSON list"),
        ({}, "completions", "is required"),
        ({"completions": ["a", "b", "c", "d"], "models": ["m"]}, "models", "has 1 names for 4 completions"),
        ({"completions": ["a", "b", "c", "d"], "gold_ranks": [1, 2, 4, 4]}, "gold_ranks", "without gaps"),
        ({"completions": ["a", "b", "c", "d"], "gold_ranks": [1, 1, 1, 1]}, "gold_ranks", "a known order"),
        ({"completions": ["a", "b", "c", "d"], "gold_ranks": [1, 2, 3]}, "gold_ranks", "has 3 ranks"),
        ({"completions": ["a", "b", "c", "d"], "extra": 1}, "extra", "unknown field"),
    ],
)
def test_bad_rows_reject_the_file_naming_line_and_field(
    session: Session, values: dict[str, Any], field: str, message: str
) -> None:
    project = make_project(session, "r", rank_k=4)
    data = jsonl(row("fine", "a", "b", "c", "d"), {"prompt": "bad", **values})
    with pytest.raises(ImportFailed) as caught:
        import_file(session, project=project, kind="rankings", filename="r.jsonl", data=data)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (2, field) and message in problem.message, problem
    assert session.scalar(select(func.count()).select_from(Ranking)) == 0
    assert session.scalar(select(func.count()).select_from(Prompt)) == 0


def test_csv_rankings_take_json_encoded_lists(session: Session) -> None:
    project = make_project(session, "r", rank_k=3)
    data = b'prompt,completions,models\nhello,"[""x"", ""y"", ""z""]","[""m1"", ""m2"", null]"\n'
    report = import_file(session, project=project, kind="rankings", filename="r.csv", data=data)
    assert report.created == 1
    assert stored(session) == [("hello", ["x", "y", "z"], ["m1", "m2", None], ComparisonKind.regular, None)]
    with pytest.raises(ImportFailed, match="'completions': missing column"):
        import_file(session, project=project, kind="rankings", filename="r.csv", data=b"prompt\nhello\n")
