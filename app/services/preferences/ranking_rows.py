"""The rows of a project's rankings: ranking judgments read, expanded and decided by rankings.py.

Both databases take this path (rankings are K times fewer rows than the pairs they imply). The
ranking judgments stream ordered by ranking; each ranking's rows come from `decide_ranking`
under the same `RuleSet` and `JudgmentFilter` as the pairs' rows (label source, dates, raters,
gold), and the texts of a batch of rankings are fetched once per completion. A judgment filter
that names judgment ids (a run's snapshot) reads only the ranking judgments it names in
``ranking_judgment_ids`` (none when that is unset).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select, String, select, type_coerce
from sqlalchemy.orm import Session

from app.models import ComparisonKind, Completion, Prompt, Ranking, RankingJudgment
from app.services.preferences.rankings import RankingVote, decide_ranking
from app.services.preferences.records import VersionNames
from app.services.preferences.rules import (
    LABEL_SOURCES,
    JudgmentFilter,
    PreferenceRow,
    PreferenceStats,
    RuleSet,
    Side,
)

READ_BATCH = 5000  # ranking judgments per round trip
TEXT_BATCH = 500  # rankings per text query


def ranking_judgments_query(project_id: int, selection: JudgmentFilter) -> Select[Any]:
    """The ranking judgments the filter lets through, with their ranking, ordered by ranking."""
    j, r = RankingJudgment.__table__.c, Ranking.__table__.c
    query = (
        select(
            j.id,
            j.ranking_id,
            j.rater_id,
            j.ranks,
            j.cutoff_rank,
            j.display_order,
            type_coerce(j.source, String),
            j.time_spent_ms,
            RankingJudgment.created_at,
            r.prompt_id,
            type_coerce(r.kind, String),
            r.completion_ids,
            r.gold_ranks,
        )
        .select_from(RankingJudgment.__table__.join(Ranking.__table__, r.id == j.ranking_id))
        .where(j.project_id == project_id)
        .where(type_coerce(j.source, String).in_(LABEL_SOURCES[selection.label_source]))
        .order_by(j.ranking_id, j.id)
    )
    if selection.date_from is not None:
        query = query.where(RankingJudgment.created_at >= selection.date_from)
    if selection.date_to is not None:
        query = query.where(RankingJudgment.created_at < selection.date_to)
    if selection.rater_ids is not None:
        query = query.where(j.rater_id.in_(sorted(selection.rater_ids)))
    if selection.gold == "exclude":
        query = query.where(r.kind == ComparisonKind.regular.value)
    elif selection.gold == "only":
        query = query.where(r.kind == ComparisonKind.gold.value)
    wanted = selection.ranking_ids_wanted
    if wanted is not None:
        if not wanted:
            return query.where(j.id < 0)
        query = query.where(j.id.between(min(wanted), max(wanted)))
    return query


def ranking_rows(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats,
) -> Iterator[PreferenceRow]:
    """The rows implied by the project's rankings, ordered by ranking then implied pair."""
    wanted = selection.ranking_ids_wanted
    if wanted is not None and not wanted:
        return
    query = ranking_judgments_query(project_id, selection)
    result = session.execute(query.execution_options(yield_per=READ_BATCH))
    names = VersionNames(session)
    decided: list[PreferenceRow] = []
    rankings = 0
    try:
        for ranking_id, records in itertools.groupby(result, key=lambda r: r[1]):
            votes: list[RankingVote] = []
            last: Any = None
            for r in records:
                if wanted is not None and r[0] not in wanted:
                    continue
                stats.judgments_read += 1
                votes.append(RankingVote(r[0], r[2], list(r[3]), r[4], r[5], r[6], r[7], r[8]))
                last = r
            if last is None:
                continue
            decided += decide_ranking(
                votes,
                completion_ids=last[11],
                rules=rules,
                stats=stats,
                ranking_id=ranking_id,
                prompt_id=last[9],
                kind=last[10],
                gold_ranks=last[12],
            )
            rankings += 1
            if rankings >= TEXT_BATCH:
                yield from _with_texts(session, decided, names)
                stats.rows += len(decided)
                decided, rankings = [], 0
        if decided:
            yield from _with_texts(session, decided, names)
            stats.rows += len(decided)
    finally:
        result.close()


def _with_texts(session: Session, rows: list[PreferenceRow], names: VersionNames) -> Iterator[PreferenceRow]:
    """Attach prompts and completion texts, each read once for the batch."""
    prompt_ids = sorted({row.prompt_id for row in rows})
    completion_ids = sorted({cid for row in rows if row.completion_ids for cid in row.completion_ids})
    prompts: dict[int, tuple[Any, str]] = {}
    for start in range(0, len(prompt_ids), TEXT_BATCH):
        chunk = prompt_ids[start : start + TEXT_BATCH]
        for pid, messages, content_hash in session.execute(
            select(Prompt.id, Prompt.messages, Prompt.content_hash).where(Prompt.id.in_(chunk))
        ):
            prompts[pid] = (messages, content_hash)
    sides: dict[int, Side] = {}
    c = Completion.__table__.c
    for start in range(0, len(completion_ids), TEXT_BATCH):
        chunk = completion_ids[start : start + TEXT_BATCH]
        for record in session.execute(
            select(c.id, c.text, c.model_name, c.model_version_id, c.sampling).where(c.id.in_(chunk))
        ):
            side = sides[record[0]] = Side(*record)
            names.name_sides(side)
    for row in rows:
        assert row.completion_ids is not None
        row.messages, row.prompt_hash = prompts[row.prompt_id]
        a, b = sides[row.completion_ids[0]], sides[row.completion_ids[1]]
        row.chosen_side, row.rejected_side = (a, b) if row.winner == "A" else (b, a)
        yield row
