"""Demonstrations (SFT) exports: TRL's conversational SFT format and each row's provenance.

Layouts (``layout``): ``messages`` (default), TRL's conversational language-modeling format: one
``messages`` column, the conversation ending with the demonstrated assistant turn, which
SFTTrainer takes as it is; ``text``: ``prompt`` and ``response`` strings (the layout for CSV).

Which rows: by source (``demonstration_source``: all, imported, written, improved, or raters =
written and improved) and by review, like an SFT run: accepted ones (imported rows are accepted),
pending ones with ``include_pending``, rejected ones with ``include_rejected``.

Metadata columns (``metadata=True``) carry each row's provenance (app/services/provenance.py),
never null: ``source``; ``author``, a pseudonym (the HMAC the comparison exports use for raters;
``""`` for imported rows); the review (``review_status``, ``reviews``, ``reviews_accepted``,
``review_score`` the mean 1-5 score, ``0.0`` when unreviewed); for an improved row the completion
and model version it was edited from (``0`` when none) and ``edit_distance`` (characters; ``-1``
for rows that are not improvements); ``time_spent_ms``; ``lazy_flags``, comma-separated. The
dataset card reports the rows' writing figures (`WritingFigures`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.models import Demonstration, Project, Prompt
from app.schemas.export import DemoExport
from app.services.exporting.columns import Column, Pseudonyms, assistant, prompt_as_text
from app.services.exporting.prepare import (
    WRITE_BATCH,
    CardStats,
    PreparedExport,
    split_of,
)
from app.services.provenance import (
    DEMONSTRATION_SOURCES,
    PROVENANCE,
    WritingFigures,
    provenance,
    provenance_select,
    review_statuses,
)

# A record of `provenance_select(content_hash, created_at)`: id, messages, response, prompt_id,
# the provenance columns, then the two extra columns.
_HASH = 4 + len(PROVENANCE)
_CREATED = _HASH + 1


@dataclass
class DemoStats(CardStats):
    """The card's counts, and the writing figures of the exported rows."""

    writing: WritingFigures = field(default_factory=WritingFigures)


def _or(value: int | None, missing: int) -> int:
    return missing if value is None else value


def _columns(layout: str, metadata: bool) -> list[Column]:
    """Columns of a (record, provenance dict) pair."""
    if layout == "messages":
        columns = [Column("messages", "messages", lambda r: [*r[0][1], *assistant(r[0][2])])]
    else:
        columns = [
            Column("prompt", "str", lambda r: prompt_as_text(r[0][1])),
            Column("response", "str", lambda r: r[0][2]),
        ]
    if not metadata:
        return columns
    return [
        *columns,
        Column("demonstration_id", "int", lambda r: r[0][0]),
        Column("prompt_id", "int", lambda r: r[0][3]),
        Column("created_at", "timestamp", lambda r: r[0][_CREATED]),
        Column("source", "str", lambda r: r[1]["source"]),
        Column("author", "str", lambda r: r[1]["author"]),
        Column("review_status", "str", lambda r: r[1]["review_status"]),
        Column("reviews", "int", lambda r: r[1]["reviews"]),
        Column("reviews_accepted", "int", lambda r: r[1]["reviews_accepted"]),
        Column("review_score", "float", lambda r: r[1]["review_score"] or 0.0),
        Column("edited_from_completion_id", "int", lambda r: r[1]["edited_from_completion_id"] or 0),
        Column("edited_from_model_version_id", "int", lambda r: r[1]["edited_from_model_version_id"] or 0),
        Column(
            "edit_distance", "int", lambda r: -1 if r[1]["edit_distance"] is None else r[1]["edit_distance"]
        ),
        Column("time_spent_ms", "int", lambda r: r[1]["time_spent_ms"]),
        Column("lazy_flags", "str", lambda r: ",".join(r[1]["lazy_flags"])),
    ]


RULES = [
    "Each demonstration is one row: the prompt's conversation and the written response.",
    "Written and improved demonstrations are accepted or rejected by the majority of their reviews "
    "(never by their author); imported ones count as accepted.",
]


def _filters(spec: DemoExport) -> list[str]:
    reviews = ["accepted"]
    if spec.include_pending:
        reviews.append("pending (not yet reviewed)")
    if spec.include_rejected:
        reviews.append("rejected")
    lines = [f"Sources: {spec.demonstration_source}.", f"Review status: {', '.join(reviews)}."]
    if spec.date_from:
        lines.append(f"Created at or after {spec.date_from.isoformat()}.")
    if spec.date_to:
        lines.append(f"Created before {spec.date_to.isoformat()}.")
    return lines


def prepare_demos(session: Session, *, project: Project, spec: DemoExport, secret_key: str) -> PreparedExport:
    columns = _columns(spec.resolved_layout, spec.metadata)
    getters = [c.get for c in columns]
    if spec.metadata:
        columns.append(Column("split", "str", lambda r: r))
    stats = DemoStats()
    author = Pseudonyms(secret_key)
    statuses = review_statuses(include_pending=spec.include_pending, include_rejected=spec.include_rejected)
    query = (
        provenance_select(Prompt.content_hash, Demonstration.created_at)
        .where(
            Demonstration.project_id == project.id,
            Demonstration.source.in_(DEMONSTRATION_SOURCES[spec.demonstration_source]),
            Demonstration.review_status.in_(statuses),
        )
        .order_by(Demonstration.id)
    )
    if spec.date_from:
        query = query.where(Demonstration.created_at >= spec.date_from)
    if spec.date_to:
        query = query.where(Demonstration.created_at < spec.date_to)

    def batches() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        batch: list[tuple[str, tuple[Any, ...]]] = []
        result = session.execute(query.execution_options(yield_per=WRITE_BATCH))
        try:
            for record in result:
                split = split_of(record[_HASH], test_fraction=spec.test_fraction, seed=spec.split_seed)
                values = provenance(record, author)
                stats.rows[split] += 1
                stats.chosen_chars += len(record[2])
                stats.writing.add(values)
                row = [get((record, values)) for get in getters]
                if spec.metadata:
                    row.append(split)
                batch.append((split, tuple(row)))
                if len(batch) >= WRITE_BATCH:
                    yield batch
                    batch = []
        finally:
            result.close()
        if batch:
            yield batch

    return PreparedExport(
        kind="demos",
        project=project,
        spec=spec,
        columns=columns,
        batches=batches,
        stats=stats,
        rules=RULES,
        filters=_filters(spec),
    )
