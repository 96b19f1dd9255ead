"""Preparing an export: the columns, the train/test split and a generator of row batches.

Rows stream from a server-side cursor (services/preferences) in batches, so memory stays flat
however large the export, and an HTTP download starts with the first batch. `CardStats` gathers
what the dataset card reports in the same pass.

The train/test split is by prompt: a prompt lands in ``test`` when a hash of the split seed and
the prompt's content hash falls below ``test_fraction``, so no prompt is in both splits and the
same prompt always lands in the same split.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.db import is_postgres
from app.models import Project
from app.schemas.export import EXTENSIONS, ComparisonExport, DemoExport, RankingExport
from app.services.exporting.columns import (
    Column,
    Pseudonyms,
    comparison_columns,
)
from app.services.exporting.postgres import LabelQuality, LineStats, Summary, sql_export
from app.services.exporting.postgres_columns import ColumnBatch
from app.services.preferences.rows import iter_preference_rows, rater_ids_for
from app.services.preferences.rules import JudgmentFilter, PreferenceRow, PreferenceStats, RuleSet

WRITE_BATCH = 5000  # rows per write to the output (and per chunk of an HTTP download)
SPLIT_CACHE = 100_000  # prompt hashes whose split is remembered
# Columns of a ``per_rater`` row that depend on the judgment; the others depend only on the
# comparison and the winner, so they are computed once for the rows that share both.
VOTE_COLUMNS = frozenset(
    {"margin", "judgment_id", "rater", "source", "strength", "both_bad", "flags", "rationale",
     "time_spent_ms", "a_on_left", "created_at"}
)  # fmt: skip


def split_of(prompt_hash: str, *, test_fraction: float, seed: int) -> str:
    """``train`` or ``test``, decided by the prompt alone (no prompt in both)."""
    if test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{seed}:{prompt_hash}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


@dataclass
class CardStats:
    """What the dataset card reports, gathered in one pass with flat memory."""

    rows: Counter[str] = field(default_factory=Counter)
    comparisons: int = 0
    judgments: int = 0
    raters: set[int] = field(default_factory=set)
    agreement_sum: float = 0.0
    margin_sum: float = 0.0
    agreement_buckets: Counter[str] = field(default_factory=Counter)
    chosen_chars: int = 0
    rejected_chars: int = 0
    chosen_longer: int = 0
    same_length: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    # rows in which a completion of each model version appears (chosen or rejected)
    versions: Counter[int] = field(default_factory=Counter)
    _chosen_sample: list[int] = field(default_factory=list)
    _rejected_sample: list[int] = field(default_factory=list)
    _random: random.Random = field(default_factory=lambda: random.Random(0))
    _last_unit: tuple[int, int, int] = (-1, 0, 0)
    _n: int = 0
    preference: PreferenceStats = field(default_factory=PreferenceStats)

    SAMPLE = 20_000  # reservoir for the median lengths

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def add(self, row: PreferenceRow, split: str) -> None:
        self.rows[split] += 1
        if row.unit != self._last_unit:  # a comparison, or one pair of a ranking
            self.comparisons += row.ranking_id is None
            self._last_unit = row.unit
        votes = row.votes_used
        raters, sources = self.raters, self.sources
        for vote in votes:
            raters.add(vote.rater_id)
            sources[vote.source] += 1
        self.judgments += len(votes)
        agreement = row.agreement
        self.agreement_sum += agreement
        self.margin_sum += row.margin
        self.agreement_buckets[_bucket(agreement)] += 1
        chosen_side, rejected_side = row.chosen_side, row.rejected_side
        assert chosen_side is not None and rejected_side is not None
        first, second = chosen_side.model_version_id, rejected_side.model_version_id
        if first is not None:
            self.versions[first] += 1
        if second is not None and second != first:
            self.versions[second] += 1
        chosen, rejected = len(chosen_side.text), len(rejected_side.text)
        self.chosen_chars += chosen
        self.rejected_chars += rejected
        self.chosen_longer += chosen > rejected
        self.same_length += chosen == rejected
        self._n = n = self._n + 1
        if n <= self.SAMPLE:
            self._chosen_sample.append(chosen)
            self._rejected_sample.append(rejected)
        else:
            slot = self._random.randrange(n)
            if slot < self.SAMPLE:
                self._chosen_sample[slot], self._rejected_sample[slot] = chosen, rejected

    def add_lines(self, lines: LineStats) -> None:
        """`add` for a batch of rows of the PostgreSQL path, from their figures alone (the votes'
        figures come with `add_summary`)."""
        rows, buckets, versions = self.rows, self.agreement_buckets, self.versions
        agreement_sum, margin_sum = self.agreement_sum, self.margin_sum
        chosen_sample, rejected_sample, sample, randrange = (
            self._chosen_sample,
            self._rejected_sample,
            self.SAMPLE,
            self._random.randrange,
        )
        n = self._n
        for split, agreement, margin, chosen, rejected, first, second in zip(
            lines.splits, lines.agreements, lines.margins, lines.chosen_chars, lines.rejected_chars,
            lines.chosen_versions, lines.rejected_versions, strict=True,
        ):  # fmt: skip
            rows[split] += 1
            agreement_sum += agreement
            margin_sum += margin
            buckets[_bucket(agreement)] += 1
            if first:
                versions[first] += 1
            if second and second != first:
                versions[second] += 1
            self.chosen_chars += chosen
            self.rejected_chars += rejected
            self.chosen_longer += chosen > rejected
            self.same_length += chosen == rejected
            n += 1
            if n <= sample:
                chosen_sample.append(chosen)
                rejected_sample.append(rejected)
            else:
                slot = randrange(n)
                if slot < sample:
                    chosen_sample[slot], rejected_sample[slot] = chosen, rejected
        self._n = n
        self.agreement_sum, self.margin_sum = agreement_sum, margin_sum

    def add_summary(self, summary: Summary) -> None:
        self.comparisons = summary.comparisons
        self.judgments = summary.judgments
        self.raters = summary.raters
        self.sources = Counter(summary.sources)
        self.preference = summary.preference

    def median_chars(self) -> tuple[float, float]:
        return _median(self._chosen_sample), _median(self._rejected_sample)


def _bucket(agreement: float) -> str:
    if agreement >= 1.0:
        return "1.0"
    if agreement >= 0.75:
        return "0.75-1.0"
    if agreement >= 0.5:
        return "0.5-0.75"
    return "<0.5"


def _median(values: list[int]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class PreparedExport:
    """An export ready to run: its columns, and a generator of (split, row tuple) batches."""

    kind: str  # comparisons | rankings | demos
    project: Project
    spec: ComparisonExport | RankingExport | DemoExport
    columns: list[Column]
    batches: Callable[[], Iterator[list[tuple[str, tuple[Any, ...]]]]]
    stats: CardStats
    rules: list[str]
    filters: list[str]
    # On PostgreSQL, for JSONL and Parquet: batches of (split, JSON line), the same rows as
    # `batches` written by PostgreSQL (exporting/postgres.py); the outputs prefer it.
    lines: Callable[[], Iterator[list[tuple[str, bytes]]]] | None = None
    # On PostgreSQL, for Parquet where the columns can be read without JSON: the same rows as
    # batches of Arrow tables (exporting/postgres_columns.py); the outputs prefer it to `lines`.
    tables: Callable[[], Iterator[ColumnBatch]] | None = None
    # The card's label-quality section, started beside `lines` on a second connection.
    label_quality: LabelQuality | None = None

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.spec.format]


def prepare_comparisons(
    session: Session, *, project: Project, spec: ComparisonExport, secret_key: str
) -> PreparedExport:
    rater_ids: frozenset[int] | None = None
    if spec.raters:
        # An unknown name matches no judgment, like a rater without any: the answer never tells
        # which usernames exist.
        rater_ids = frozenset(rater_ids_for(session, spec.raters).values())
    rules = RuleSet(spec.aggregation, spec.ties, spec.include_both_bad, spec.min_agreement)
    selection = JudgmentFilter(
        label_source=spec.label_source,
        date_from=spec.date_from,
        date_to=spec.date_to,
        rater_ids=rater_ids,
        exclude_flags=frozenset(spec.exclude_flags),
        gold=spec.gold,
    )
    pseudonyms = Pseudonyms(secret_key)
    columns = comparison_columns(
        spec.resolved_layout,
        aggregated=spec.aggregation != "per_rater",
        metadata=spec.metadata,
        rater=pseudonyms,
    )
    stats = CardStats()
    quality = LabelQuality(project)
    getters = [c.get for c in columns]
    with_split = spec.metadata
    # per_rater: the values that depend only on (comparison, winner) are computed once for the
    # rows that share them (and so are the same objects, which the writers encode once).
    per_rater = spec.aggregation == "per_rater"
    vote_getters = [(i, c.get) for i, c in enumerate(columns) if not per_rater or c.name in VOTE_COLUMNS]
    shared_getters = [(i, c.get) for i, c in enumerate(columns) if per_rater and c.name not in VOTE_COLUMNS]
    width = len(getters) + with_split
    if with_split:
        columns.append(Column("split", "str", lambda r: r))
    add = stats.add
    test_fraction, seed = spec.test_fraction, spec.split_seed

    def batches() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        batch: list[tuple[str, tuple[Any, ...]]] = []
        splits: dict[str, str] = {}
        rows = iter_preference_rows(
            session, project_id=project.id, rules=rules, selection=selection, stats=stats.preference
        )
        unit = (-1, 0, 0)
        by_winner: dict[str, list[Any]] = {}  # the current unit's shared values per winner
        split = "train"
        for row in rows:
            if row.unit != unit:
                unit = row.unit
                by_winner = {}
                split = splits.get(row.prompt_hash)  # type: ignore[assignment]
                if split is None:
                    if len(splits) >= SPLIT_CACHE:
                        splits.clear()
                    split = splits[row.prompt_hash] = split_of(
                        row.prompt_hash, test_fraction=test_fraction, seed=seed
                    )
            shared = by_winner.get(row.winner)  # type: ignore[assignment]
            if shared is None:
                shared = [None] * width
                for i, get in shared_getters:
                    shared[i] = get(row)
                if with_split:
                    shared[-1] = split
                if per_rater:
                    by_winner[row.winner] = shared
            add(row, split)
            values = shared.copy()
            for i, get in vote_getters:
                values[i] = get(row)
            batch.append((split, tuple(values)))
            if len(batch) >= WRITE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    lines, tables = _sql_lines(session, project, spec, columns, rules, selection, pseudonyms, stats, quality)
    return PreparedExport(
        kind="comparisons",
        project=project,
        spec=spec,
        columns=columns,
        batches=batches,
        stats=stats,
        rules=rules.describe(),
        filters=describe_filters(spec),
        lines=lines,
        tables=tables,
        label_quality=quality,
    )


def _sql_lines(
    session: Session,
    project: Project,
    spec: ComparisonExport,
    columns: list[Column],
    rules: RuleSet,
    selection: JudgmentFilter,
    pseudonyms: Pseudonyms,
    stats: CardStats,
    quality: LabelQuality,
) -> tuple[
    Callable[[], Iterator[list[tuple[str, bytes]]]] | None, Callable[[], Iterator[ColumnBatch]] | None
]:
    """The rows as JSON lines written by PostgreSQL (exporting/postgres.py), where it can, and as
    Arrow tables where Parquet's columns can be read without JSON; the card's label-quality
    section is computed meanwhile on a second connection."""
    if not is_postgres(session):
        return None, None
    sql = sql_export(
        session,
        project=project,
        spec=spec,
        columns=columns,
        rules=rules,
        selection=selection,
        rater=pseudonyms,
    )
    if sql is None:
        return None, None
    found = sql

    def lines() -> Iterator[list[tuple[str, bytes]]]:
        quality.start(session)
        for batch, figures in found.lines():
            stats.add_lines(figures)
            yield batch
        assert found.summary is not None, "the statement ends with its summary row"
        stats.add_summary(found.summary)

    def tables() -> Iterator[ColumnBatch]:
        quality.start(session)
        for batch, figures in found.tables(columns):
            stats.add_lines(figures)
            yield batch
        assert found.summary is not None, "the statement ends with its summary row"
        stats.add_summary(found.summary)

    return lines, (tables if found.columnar is not None else None)


def describe_filters(spec: ComparisonExport | RankingExport | DemoExport) -> list[str]:
    lines = []
    if isinstance(spec, ComparisonExport | RankingExport):
        lines.append(f"Label source: {spec.label_source}.")
        lines.append(f"Gold pairs: {spec.gold}.")
        if spec.raters:
            lines.append(f"Raters: {len(spec.raters)} selected.")
        if isinstance(spec, ComparisonExport) and spec.exclude_flags:
            lines.append(f"Excluded flags: {', '.join(spec.exclude_flags)}.")
        if isinstance(spec, ComparisonExport) and spec.min_agreement:
            lines.append(f"Minimum agreement: {spec.min_agreement:g}.")
    if spec.date_from:
        lines.append(f"Created at or after {spec.date_from.isoformat()}.")
    if spec.date_to:
        lines.append(f"Created before {spec.date_to.isoformat()}.")
    return lines
