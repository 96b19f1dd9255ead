"""The judgment tallies (app/models/tallies.py) recounted from the judgments: to check that the
triggers kept them (`check`), and to rebuild them (`rebuild`) after judgments were written with
the triggers off (a restore with ``--disable-triggers``, replication with
``session_replication_role = replica``, a SQLite migration that rebuilt ``judgments``).

The recount is the definition of each tally, written without the triggers: a per-table
aggregate in SQL, the flags (a JSON list per judgment) in Python. ``rebuild`` replaces every
tally row in one transaction; on PostgreSQL it holds a SHARE lock on ``judgments`` meanwhile,
so no judgment is written between the recount and the new rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, text
from sqlalchemy.orm import Session, aliased

from app.db import is_postgres
from app.models import (
    Comparison,
    ComparisonTally,
    Completion,
    Judgment,
    RaterFlagTally,
    RaterHour,
    RaterPairTally,
    RaterTally,
)

_j = Judgment.__table__.c
_SIGNED = {"s_m2": -2, "s_m1": -1, "s_0": 0, "s_p1": 1, "s_p2": 2}
_signed = case((_j.choice == "A", _j.strength), (_j.choice == "B", -_j.strength), else_=0)


def _count_if(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def _signed_sums() -> list[Any]:
    return [_count_if(_signed == value).label(name) for name, value in _SIGNED.items()]


Rows = dict[tuple[Any, ...], tuple[int, ...]]


def _comparisons(session: Session) -> Rows:
    votes = (
        select(
            _j.comparison_id,
            _j.source,
            func.min(_j.project_id).label("project_id"),
            func.count().label("votes"),
            _count_if(_j.choice == "A").label("a"),
            _count_if(_j.choice == "B").label("b"),
            _count_if(_j.choice == "tie").label("tie"),
            *_signed_sums(),
        )
        .group_by(_j.comparison_id, _j.source)
        .subquery()
    )
    ca, cb = aliased(Completion), aliased(Completion)
    query = (
        select(votes, func.length(ca.text), func.length(cb.text))
        .join(Comparison, Comparison.id == votes.c.comparison_id)
        .join(ca, ca.id == Comparison.completion_a_id)
        .join(cb, cb.id == Comparison.completion_b_id)
    )
    return {(r[0], str(r[1])): tuple(int(v) for v in r[2:]) for r in session.execute(query)}


def _raters(session: Session) -> Rows:
    left = ((_j.choice == "A") & _j.a_on_left.is_(True)) | ((_j.choice == "B") & _j.a_on_left.is_(False))
    query = select(
        _j.project_id,
        _j.rater_id,
        _j.source,
        func.count(),
        _count_if(_j.choice == "tie"),
        _count_if(_j.both_bad.is_(True)),
        _count_if(_j.choice != "tie"),
        _count_if(left),
        *_signed_sums(),
    ).group_by(_j.project_id, _j.rater_id, _j.source)
    return {(r[0], r[1], str(r[2])): tuple(int(v) for v in r[3:]) for r in session.execute(query)}


def _judgment_rows(session: Session) -> Iterator[Any]:
    return iter(
        session.execute(
            select(_j.project_id, _j.rater_id, _j.source, _j.created_at, _j.flags).execution_options(
                yield_per=10_000
            )
        )
    )


def _hour(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite hands back the stored text when read raw
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(minute=0, second=0, microsecond=0)


def _hours_and_flags(session: Session) -> tuple[Rows, Rows, Counter[tuple[Any, ...]]]:
    """Per (project, rater, source, hour) judgments; per (..., flag) judgments; flagged ones."""
    hours: Counter[tuple[Any, ...]] = Counter()
    flags: Counter[tuple[Any, ...]] = Counter()
    flagged: Counter[tuple[Any, ...]] = Counter()
    for project_id, rater_id, source, created_at, judgment_flags in _judgment_rows(session):
        key = (project_id, rater_id, str(source))
        hours[(*key, _hour(created_at))] += 1
        listed = judgment_flags if isinstance(judgment_flags, list) else []
        if listed:
            flagged[key] += 1
        for flag in set(map(str, listed)):
            flags[(*key, flag)] += 1
    return {k: (n,) for k, n in hours.items()}, {k: (n,) for k, n in flags.items()}, flagged


def _pairs(session: Session) -> Rows:
    x, y = Judgment.__table__.alias("x"), Judgment.__table__.alias("y")
    query = (
        select(x.c.project_id, x.c.rater_id, y.c.rater_id, func.count(), _count_if(x.c.choice == y.c.choice))
        .select_from(x.join(y, (y.c.comparison_id == x.c.comparison_id) & (y.c.id < x.c.id)))
        .where(x.c.source == "human", y.c.source == "human")
        .group_by(x.c.project_id, x.c.rater_id, y.c.rater_id)
    )
    return {(r[0], r[1], r[2]): (int(r[3]), int(r[4])) for r in session.execute(query)}


@dataclass(frozen=True)
class _Table:
    model: Any
    keys: tuple[str, ...]
    counts: tuple[str, ...]
    zero: str  # a row whose this count is 0 (with the others) is as good as no row


_TABLES = {
    "comparison_tallies": _Table(
        ComparisonTally,
        ("comparison_id", "source"),
        ("project_id", "votes", "a", "b", "tie", *_SIGNED, "chars_a", "chars_b"),
        "votes",
    ),
    "rater_tallies": _Table(
        RaterTally,
        ("project_id", "rater_id", "source"),
        ("judgments", "ties", "both_bad", "non_tie", "left_picks", *_SIGNED, "flagged"),
        "judgments",
    ),
    "rater_hours": _Table(
        RaterHour, ("project_id", "rater_id", "source", "hour"), ("judgments",), "judgments"
    ),
    "rater_flag_tallies": _Table(
        RaterFlagTally, ("project_id", "rater_id", "source", "flag"), ("judgments",), "judgments"
    ),
    "rater_pair_tallies": _Table(
        RaterPairTally, ("project_id", "rater_id", "other_id"), ("pairs", "agreeing"), "pairs"
    ),
}


def recount(session: Session) -> dict[str, Rows]:
    """Every tally as the judgments define it, per table: {key: counts} (no zero rows)."""
    hours, flags, flagged = _hours_and_flags(session)
    raters = {key: (*counts, flagged.get(key, 0)) for key, counts in _raters(session).items()}
    return {
        "comparison_tallies": _comparisons(session),
        "rater_tallies": raters,
        "rater_hours": hours,
        "rater_flag_tallies": flags,
        "rater_pair_tallies": _pairs(session),
    }


def _stored(session: Session, name: str) -> Rows:
    table = _TABLES[name]
    model = table.model
    rows: Rows = {}
    for row in session.execute(
        select(*[getattr(model, c) for c in (*table.keys, *table.counts)]).where(
            getattr(model, table.zero) != 0
        )
    ):
        key = tuple(
            _hour(v) if c == "hour" else str(v) if c == "source" else v
            for c, v in zip(table.keys, row[: len(table.keys)], strict=True)
        )
        rows[key] = tuple(int(v) for v in row[len(table.keys) :])
    return rows


@dataclass(frozen=True)
class TallyCheck:
    table: str
    rows: int  # rows the recount gives
    wrong: int  # rows stored with other counts, missing, or stored without a reason

    @property
    def ok(self) -> bool:
        return self.wrong == 0


def check(session: Session) -> list[TallyCheck]:
    """Each tally table against the recount."""
    expected = recount(session)
    result = []
    for name in _TABLES:
        found = _stored(session, name)
        want = expected[name]
        wrong = sum(1 for key in want.keys() | found.keys() if want.get(key) != found.get(key))
        result.append(TallyCheck(name, len(want), wrong))
    return result


def rebuild(session: Session) -> dict[str, int]:
    """Replace every tally row by the recount, in the caller's transaction; rows per table."""
    if is_postgres(session):
        session.execute(text("LOCK TABLE judgments IN SHARE MODE"))
    expected = recount(session)
    written = {}
    for name, table in _TABLES.items():
        session.execute(delete(table.model))
        columns = (*table.keys, *table.counts)
        rows = [dict(zip(columns, (*key, *counts), strict=True)) for key, counts in expected[name].items()]
        for start in range(0, len(rows), 5_000):
            session.execute(insert(table.model), rows[start : start + 5_000])
        written[name] = len(rows)
    return written
