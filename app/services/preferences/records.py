"""The judgments query both row paths read, and how one comparison's records become its rows.

A record is a plain tuple in the query's column order; `decide_records` applies the filters
that are checked per judgment (a snapshot's ids, excluded flags) and hands the votes to `decide`.
`VersionNames` gives both paths the names of the model versions that sampled a row's texts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Select, String, case, func, select, type_coerce
from sqlalchemy.orm import Session

from app.models import Comparison, ComparisonKind, Judgment, ModelVersion
from app.services.preferences.rules import (
    LABEL_SOURCES,
    RESOLVED,
    JudgmentFilter,
    PreferenceRow,
    PreferenceStats,
    RuleSet,
    Side,
    Vote,
    decide,
)


def judgments_query(project_id: int, selection: JudgmentFilter) -> Select[Any]:
    # Plain strings for the enum columns: no per-row enum construction on a million rows.
    j, c = Judgment.__table__.c, Comparison.__table__.c
    query = (
        select(
            j.id,
            j.comparison_id,
            j.rater_id,
            type_coerce(j.choice, String),
            j.strength,
            j.both_bad,
            c.prompt_id,
            j.flags,
            j.rationale,
            j.time_spent_ms,
            j.a_on_left,
            type_coerce(j.source, String),
            Judgment.created_at,
            # A pair an admin resolved is labelled by the resolution, like a gold pair.
            case((c.resolved_choice.is_not(None), RESOLVED), else_=type_coerce(c.kind, String)),
            type_coerce(func.coalesce(c.resolved_choice, c.gold_choice), String),
        )
        .select_from(Judgment.__table__.join(Comparison.__table__, c.id == j.comparison_id))
        .where(j.project_id == project_id)
        .order_by(j.comparison_id, j.id)
    )
    query = query.where(type_coerce(j.source, String).in_(LABEL_SOURCES[selection.label_source]))
    if selection.date_from is not None:
        query = query.where(Judgment.created_at >= selection.date_from)
    if selection.date_to is not None:
        query = query.where(Judgment.created_at < selection.date_to)
    if selection.rater_ids is not None:
        query = query.where(j.rater_id.in_(sorted(selection.rater_ids)))
    if selection.gold == "exclude":
        query = query.where(c.kind == ComparisonKind.regular.value)
    elif selection.gold == "only":
        query = query.where(c.kind == ComparisonKind.gold.value)
    if selection.judgment_ids is not None:
        # The exact set is checked in Python (it may hold a million ids); the range narrows the scan.
        if not selection.judgment_ids:
            return query.where(j.id < 0)
        query = query.where(j.id.between(min(selection.judgment_ids), max(selection.judgment_ids)))
    return query


def decide_records(
    comparison_id: int,
    records: Iterable[tuple[Any, ...]],
    *,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats,
    flags_of: Callable[[Any], list[str]],
) -> list[PreferenceRow]:
    """The rows of one comparison from its records (of `judgments_query`), in judgment order.

    ``flags_of`` turns the flags column as the path reads it into a list.
    """
    stats.comparisons_read += 1
    wanted_ids = selection.judgment_ids
    excluded = selection.exclude_flags
    votes: list[Vote] = []
    last: tuple[Any, ...] = ()
    for r in records:
        if wanted_ids is not None and r[0] not in wanted_ids:
            continue
        stats.judgments_read += 1
        flags = flags_of(r[7])
        if excluded and not excluded.isdisjoint(flags):
            stats.dropped["flagged"] += 1
            continue
        votes.append(Vote(r[0], r[2], r[3], r[4], r[5], flags, *r[8:13]))
        last = r
    if not votes:
        return []
    return decide(
        votes,
        rules=rules,
        stats=stats,
        comparison_id=comparison_id,
        prompt_id=last[6],
        kind=str(last[13]),
        gold_choice=last[14],
    )


class VersionNames:
    """Names of the model versions behind completions: each version's own name and its base
    model's (the first version of its lineage, found through the parents). The registry is read
    once, when first needed: it holds a few hundred versions, not millions of rows."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._versions: dict[int, tuple[str, int | None]] | None = None
        self._bases: dict[int, str] = {}

    def _load(self) -> dict[int, tuple[str, int | None]]:
        if self._versions is None:
            v = ModelVersion.__table__.c
            self._versions = {
                version_id: (name, parent_id)
                for version_id, name, parent_id in self._session.execute(select(v.id, v.name, v.parent_id))
            }
        return self._versions

    def base(self, version_id: int) -> str | None:
        found = self._bases.get(version_id)
        if found is None:
            versions = self._load()
            seen: set[int] = set()
            current: int | None = version_id
            while current is not None and current in versions and current not in seen:
                seen.add(current)
                found, current = versions[current]
            if found is not None:
                self._bases[version_id] = found
        return found

    def name_sides(self, *sides: Side) -> None:
        """Fill in the version and base model names of sides sampled by a registered version."""
        for side in sides:
            if side.model_version_id is not None:
                entry = self._load().get(side.model_version_id)
                side.model_version_name = entry[0] if entry else None
                side.base_model_name = self.base(side.model_version_id)
