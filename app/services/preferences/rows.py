"""Preference rows of a project: the entry points, and the row path every database can run.

`preference_rows` (keyword options) and `iter_preference_rows` (a `RuleSet` and a
`JudgmentFilter`) stream rows ordered by comparison id (then judgment id for ``per_rater``),
then the rows the project's rankings imply (ranking_rows.py), ordered by ranking.
On PostgreSQL the rows come from postgres.py; elsewhere from `sqlalchemy_rows`: judgments read
through a server-side cursor (``yield_per``) ordered by comparison, texts fetched afterwards per
batch of decided comparisons, once per comparison (not once per judgment). Memory is bounded by
the batch size, not by the number of judgments. Both paths give the same rows (a test runs the
same votes through both).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, aliased

from app.db import is_postgres
from app.models import Comparison, Completion, Prompt, User
from app.services.preferences.postgres import postgres_rows
from app.services.preferences.ranking_rows import ranking_rows
from app.services.preferences.records import VersionNames, decide_records, judgments_query
from app.services.preferences.rules import (
    AGGREGATIONS,
    Aggregation,
    Gold,
    JudgmentFilter,
    LabelSource,
    PreferenceRow,
    PreferenceStats,
    RuleSet,
    Side,
    Ties,
)

READ_BATCH = 5000  # judgments per round trip of the server-side cursor
TEXT_BATCH = 1000  # comparisons per text query (an IN list well under SQLite's limits)


def preference_rows(
    session: Session,
    *,
    project_id: int,
    judgment_ids: Iterable[int] | None = None,
    ranking_judgment_ids: Iterable[int] | None = None,
    aggregation: Aggregation = "majority",
    label_source: LabelSource = "human",
    include_both_bad: bool = False,
    min_agreement: float = 0.0,
    ties: Ties = "drop",
    keep_ties: bool = False,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    rater_ids: Iterable[int] | None = None,
    exclude_flags: Iterable[str] = (),
    gold: Gold = "include",
    stats: PreferenceStats | None = None,
) -> Iterator[PreferenceRow]:
    """Stream the preference rows of a project under the rules of the module docstring.

    Rows come ordered by comparison id (then judgment id for ``per_rater``). The session must
    stay open while the iterator is consumed.
    """
    rules = RuleSet(aggregation, ties, include_both_bad, min_agreement, keep_ties)
    selection = JudgmentFilter(
        judgment_ids=frozenset(judgment_ids) if judgment_ids is not None else None,
        label_source=label_source,
        date_from=date_from,
        date_to=date_to,
        rater_ids=frozenset(rater_ids) if rater_ids is not None else None,
        exclude_flags=frozenset(exclude_flags),
        gold=gold,
        ranking_judgment_ids=frozenset(ranking_judgment_ids) if ranking_judgment_ids is not None else None,
    )
    return iter_preference_rows(session, project_id=project_id, rules=rules, selection=selection, stats=stats)


def iter_preference_rows(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats | None = None,
) -> Iterator[PreferenceRow]:
    if rules.aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rules.aggregation!r}")
    if not 0.0 <= rules.min_agreement <= 1.0:
        raise ValueError("min_agreement must be between 0 and 1")
    stats = stats if stats is not None else PreferenceStats()
    rows = postgres_rows if is_postgres(session) else sqlalchemy_rows
    yield from rows(session, project_id=project_id, rules=rules, selection=selection, stats=stats)
    yield from ranking_rows(session, project_id=project_id, rules=rules, selection=selection, stats=stats)


def _no_null_flags(flags: list[str] | None) -> list[str]:
    return flags or []


def sqlalchemy_rows(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats,
) -> Iterator[PreferenceRow]:
    """The rows through SQLAlchemy alone (any database); the texts are attached per batch."""
    query = judgments_query(project_id, selection)
    result = session.execute(query.execution_options(yield_per=READ_BATCH))
    decided: list[PreferenceRow] = []
    names = VersionNames(session)
    try:
        for comparison_id, records in itertools.groupby(result, key=lambda r: r[1]):
            decided += decide_records(
                comparison_id, records, rules=rules, selection=selection, stats=stats, flags_of=_no_null_flags
            )
            if len(decided) >= TEXT_BATCH:
                yield from _with_texts(session, decided, names)
                stats.rows += len(decided)
                decided = []
        if decided:
            yield from _with_texts(session, decided, names)
            stats.rows += len(decided)
    finally:
        result.close()


def _with_texts(session: Session, rows: list[PreferenceRow], names: VersionNames) -> Iterator[PreferenceRow]:
    """Attach prompts and completion texts (with their models' names), fetched once per
    comparison of the batch."""
    ids = sorted({row.comparison_id for row in rows})
    texts: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), TEXT_BATCH):
        for found in session.execute(_texts_query(ids[start : start + TEXT_BATCH])):
            texts[found[0]] = tuple(found)
    sides: dict[int, tuple[Side, Side]] = {}  # shared by the rows of a comparison
    for row in rows:
        record = texts[row.comparison_id]
        pair = sides.get(row.comparison_id)
        if pair is None:
            pair = sides[row.comparison_id] = (Side(*record[3:8]), Side(*record[8:13]))
            names.name_sides(*pair)
        row.messages, row.prompt_hash = record[1], record[2]
        row.chosen_side, row.rejected_side = pair if row.winner == "A" else pair[::-1]
        yield row


def _texts_query(comparison_ids: list[int]) -> Select[Any]:
    a, b = aliased(Completion.__table__), aliased(Completion.__table__)
    c, p = Comparison.__table__.c, Prompt.__table__.c
    return (
        select(
            c.id,
            Prompt.messages,
            p.content_hash,
            a.c.id,
            a.c.text,
            a.c.model_name,
            a.c.model_version_id,
            a.c.sampling,
            b.c.id,
            b.c.text,
            b.c.model_name,
            b.c.model_version_id,
            b.c.sampling,
        )
        .select_from(Comparison.__table__)
        .join(Prompt.__table__, p.id == c.prompt_id)
        .join(a, a.c.id == c.completion_a_id)
        .join(b, b.c.id == c.completion_b_id)
        .where(c.id.in_(comparison_ids))
    )


def rater_ids_for(session: Session, usernames: Iterable[str]) -> dict[str, int]:
    """Usernames -> user ids (for the raters filter); unknown names are left out."""
    names = sorted(set(usernames))
    if not names:
        return {}
    return dict(session.execute(select(User.username, User.id).where(User.username.in_(names))).all())
