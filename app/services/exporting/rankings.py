"""The native rankings export: one row per ranking, with every rater's order of its completions.

Columns (``metadata=True`` adds the ids, the split and the provenance):

* ``prompt``: the conversation (layout ``conversational``) or its text (``text``);
* ``completions``: the K responses in stored order; ``models``: who wrote each (``""`` unknown);
* ``ranks``: one list per rater, aligned with ``completions`` (1 = best, equal ranks = a tie);
* ``raters``: the pseudonymous rater of each list of ``ranks``;
* ``cutoff_ranks``: each rater's "all bad" line: completions ranked below it are unacceptable,
  ``0`` = all of them, ``-1`` = no line drawn;
* ``gold_ranks``: a gold ranking's known order (``[]`` for a regular ranking).

The same rankings expanded into pairs (rankings.py in services/preferences) are part of every
comparisons export, which TRL reads as it is; the dataset card counts both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Completion, Project, Prompt
from app.schemas.export import RankingExport
from app.services.exporting.columns import Column, Pseudonyms, prompt_as_text
from app.services.exporting.prepare import WRITE_BATCH, CardStats, PreparedExport, describe_filters, split_of
from app.services.preferences.ranking_rows import ranking_judgments_query
from app.services.preferences.records import VersionNames
from app.services.preferences.rows import rater_ids_for
from app.services.preferences.rules import JudgmentFilter, Side

TEXT_BATCH = 500  # rankings whose texts are read in one query


def ranking_columns(layout: str, *, metadata: bool, rater: Pseudonyms) -> list[Column]:
    """Columns over a ranking record: a dict built by `prepare_rankings`."""
    columns = [
        Column("prompt", "messages", lambda r: r["messages"])
        if layout == "conversational"
        else Column("prompt", "str", lambda r: prompt_as_text(r["messages"])),
        Column("completions", "str_list", lambda r: [side.text for side in r["sides"]]),
        Column("models", "str_list", lambda r: [side.model for side in r["sides"]]),
        Column("ranks", "int_list_list", lambda r: [list(v[3]) for v in r["votes"]]),
        Column("raters", "str_list", lambda r: [rater(v[2]) for v in r["votes"]]),
        Column("cutoff_ranks", "int_list", lambda r: [-1 if v[4] is None else v[4] for v in r["votes"]]),
        Column("gold_ranks", "int_list", lambda r: list(r["gold_ranks"] or [])),
    ]
    if metadata:
        columns += [
            Column("ranking_id", "int", lambda r: r["ranking_id"]),
            Column("prompt_id", "int", lambda r: r["prompt_id"]),
            Column("kind", "str", lambda r: r["kind"]),
            Column("completion_ids", "int_list", lambda r: list(r["completion_ids"])),
            Column("model_version_ids", "int_list", lambda r: [s.model_version_id or 0 for s in r["sides"]]),
            Column("judgment_ids", "int_list", lambda r: [v[0] for v in r["votes"]]),
            Column("display_orders", "int_list_list", lambda r: [list(v[5]) for v in r["votes"]]),
            Column("time_spent_ms", "int_list", lambda r: [v[7] for v in r["votes"]]),
            Column("source", "str", lambda r: "+".join(sorted({v[6] for v in r["votes"]}))),
        ]
    return columns


def prepare_rankings(
    session: Session, *, project: Project, spec: RankingExport, secret_key: str
) -> PreparedExport:
    rater_ids = frozenset(rater_ids_for(session, spec.raters).values()) if spec.raters else None
    selection = JudgmentFilter(
        label_source=spec.label_source,
        date_from=spec.date_from,
        date_to=spec.date_to,
        rater_ids=rater_ids,
        gold=spec.gold,
    )
    columns = ranking_columns(spec.resolved_layout, metadata=spec.metadata, rater=Pseudonyms(secret_key))
    getters = [c.get for c in columns]
    if spec.metadata:
        columns.append(Column("split", "str", lambda r: r))
    stats = CardStats()

    def records() -> Iterator[dict[str, Any]]:
        query = ranking_judgments_query(project.id, selection)
        result = session.execute(query.execution_options(yield_per=WRITE_BATCH))
        try:
            pending: list[dict[str, Any]] = []
            for ranking_id, group in itertools.groupby(result, key=lambda r: r[1]):
                votes = list(group)
                first = votes[0]
                pending.append(
                    {"ranking_id": ranking_id, "prompt_id": first[9], "kind": first[10],
                     "completion_ids": first[11], "gold_ranks": first[12], "votes": votes}
                )  # fmt: skip
                if len(pending) >= TEXT_BATCH:
                    yield from _with_texts(session, pending)
                    pending = []
            if pending:
                yield from _with_texts(session, pending)
        finally:
            result.close()

    def batches() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        batch: list[tuple[str, tuple[Any, ...]]] = []
        for record in records():
            split = split_of(record["prompt_hash"], test_fraction=spec.test_fraction, seed=spec.split_seed)
            k, votes = len(record["completion_ids"]), record["votes"]
            stats.rows[split] += 1
            stats.preference.rankings_read += 1
            stats.preference.implied_pairs += k * (k - 1) // 2
            stats.judgments += len(votes)
            stats.raters.update(v[2] for v in votes)
            stats.sources.update(v[6] for v in votes)
            values = [get(record) for get in getters]
            if spec.metadata:
                values.append(split)
            batch.append((split, tuple(values)))
            if len(batch) >= WRITE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    return PreparedExport(
        kind="rankings",
        project=project,
        spec=spec,
        columns=columns,
        batches=batches,
        stats=stats,
        rules=[
            "Each ranking is one row: its K completions and every counted rater's ranks, aligned "
            "with the completions (1 = best, equal ranks = a tie).",
            "cutoff_ranks: each rater's all-bad line (completions ranked below it are unacceptable; "
            "0 = all of them, -1 = no line).",
            "The comparisons export holds the same rankings expanded into their implied pairs.",
        ],
        filters=describe_filters(spec),
    )


def _with_texts(session: Session, pending: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Attach each ranking's prompt and completion texts (read once for the batch)."""
    names = VersionNames(session)
    prompt_ids = sorted({record["prompt_id"] for record in pending})
    prompts = {
        pid: (messages, content_hash)
        for pid, messages, content_hash in session.execute(
            select(Prompt.id, Prompt.messages, Prompt.content_hash).where(Prompt.id.in_(prompt_ids))
        )
    }
    c = Completion.__table__.c
    ids = sorted({cid for record in pending for cid in record["completion_ids"]})
    sides: dict[int, Side] = {}
    for found in session.execute(
        select(c.id, c.text, c.model_name, c.model_version_id, c.sampling).where(c.id.in_(ids))
    ):
        sides[found[0]] = side = Side(*found)
        names.name_sides(side)
    for record in pending:
        record["messages"], record["prompt_hash"] = prompts[record["prompt_id"]]
        record["sides"] = [sides[cid] for cid in record["completion_ids"]]
        yield record
