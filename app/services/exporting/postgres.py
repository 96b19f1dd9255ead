"""The PostgreSQL export path: PostgreSQL decides the rows and writes each JSON line itself.

`sql_export` turns a comparisons export (JSONL or Parquet, any layout, any filter) into one
``COPY (SELECT …) TO STDOUT`` (its SQL text: postgres_sql.py): the judgments query of
services/preferences, the aggregation rules of `rules.decide` (ties, both bad, excluded flags,
majority, mean strength, per rater, gold and resolved pairs, minimum agreement), the train/test
split of `split_of`, the pseudonyms, and every column of the row as the JSON text that
`writers.JsonlWriter` writes. It writes one row per comparison: the values that lines share (the
prompt, each completion's text and provenance) once, then each line's own (postgres_lines.py), so
that each text is read and escaped once. Python only joins each line's pieces with the keys,
routes the lines by split, writes them (JSONL) or parses them with Arrow's JSON reader (Parquet),
and adds up the dataset card's figures; no Python object is built per judgment.

The judgments are read once: the statement's last row holds the card's vote figures (`Summary`),
counted from the same pass as the rows. The card's label-quality section (`LabelQuality`) runs on
a second connection while the rows stream, where that connection sees the same data.

What it guarantees: the same files, byte for byte, as the Python row path (prepare.py over
preferences/postgres.py) on the same database and spec, and the same `CardStats`
(tests/services/test_export_postgres.py compares both on seeded projects). The pieces that need
care to be identical:

* Floats (``margin``, ``agreement``) are computed in float8 with the same operations as `decide`,
  rounded to 6 decimals half to even from the shortest text of the double (which is Python's
  ``round`` except for an exact decimal tie that the double misses: a comparison with 640 or more
  counted votes), and printed as the shortest text of the rounded double, with ``.0`` where
  Python's ``repr`` has it.
* Strings go through ``to_json(text)``, whose escapes are Python's ``ensure_ascii=False`` ones;
  values that never need escapes (kinds, choices, label sources, pseudonyms) are only quoted;
  prompts are the stored JSONB text, which prints ``{"role": …, "content": …}`` messages as
  ``json.dumps`` does.
* Sampling settings (``*_sampling``, Python's ``json.dumps(sort_keys=True)``), pseudonyms (an
  HMAC under the server's key) and version names are computed and JSON-encoded in Python, with
  the JSON writer's own string encoder, for the few distinct values and joined in; a project with
  more than `MAX_LOOKUP` distinct sampling settings or model versions takes the Python path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models import Project
from app.schemas.export import ComparisonExport
from app.services.exporting.columns import Column, Pseudonyms
from app.services.exporting.postgres_columns import ColumnBatch, ColumnReader, columnar_sql
from app.services.exporting.postgres_lines import LINE_SEP, ROW_SEP, LinePlan, Lines
from app.services.exporting.postgres_sql import statement
from app.services.preferences.records import VersionNames, judgments_query
from app.services.preferences.rules import JudgmentFilter, PreferenceStats, RuleSet

WRITE_BATCH = 5000  # rows per batch, as prepare.WRITE_BATCH: Parquet row groups depend on it
WORK_MEM = "128MB"  # PostgreSQL's memory for the export's hash joins and sorts (this transaction only)
MAX_LOOKUP = 1024  # distinct sampling settings or model versions looked up in a list; more: Python path
_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the JSON writer's strings


@dataclass
class LineStats:
    """The figures of one batch of lines that the dataset card adds up, in row order."""

    splits: list[str] = field(default_factory=list)
    agreements: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    chosen_chars: list[int] = field(default_factory=list)
    rejected_chars: list[int] = field(default_factory=list)
    chosen_versions: list[int] = field(default_factory=list)
    rejected_versions: list[int] = field(default_factory=list)


@dataclass
class Summary:
    """What the card reports beyond the rows' own figures (the statement's last row)."""

    comparisons: int
    judgments: int
    raters: set[int]
    sources: dict[str, int]
    preference: PreferenceStats


class LabelQuality:
    """The "Label quality" section of one export's card, which may be computed on a second
    connection while the rows stream (`start`), so that PostgreSQL works on both at once."""

    def __init__(self, project: Project) -> None:
        self.project_id = project.id
        self._future: Future[list[str]] | None = None

    def start(self, session: Session) -> None:
        """Compute the section on a connection of its own, in a thread. Only where that connection
        sees what this session sees: a session on an engine, in a transaction that wrote nothing."""

        from app.services.exporting.card import label_quality_section

        bind = session.get_bind()
        if self._future is not None or not isinstance(bind, Engine):
            return
        if not session.execute(sql_text("SELECT pg_current_xact_id_if_assigned() IS NULL")).scalar():
            return  # uncommitted writes, which another connection would not see

        def section() -> list[str]:
            with Session(bind) as other:
                project = other.get(Project, self.project_id)
                assert project is not None
                return label_quality_section(other, project)

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="card-quality")
        self._future = pool.submit(section)
        pool.shutdown(wait=False)

    def section(self, session: Session, project: Project) -> list[str]:
        """The section: the started computation's, else computed now on ``session``."""
        from app.services.exporting.card import label_quality_section

        future, self._future = self._future, None
        return label_quality_section(session, project) if future is None else future.result()


def split_threshold(test_fraction: float) -> int:
    """The least 64-bit value u with ``u / 2**64 >= test_fraction``: `split_of` says ``test`` for
    a digest whose first 8 bytes, read big-endian, are below it."""
    if test_fraction <= 0:
        return 0
    low, high = 0, 2**64
    while low < high:
        mid = (low + high) // 2
        if mid / 2**64 >= test_fraction:
            high = mid
        else:
            low = mid + 1
    return low


@dataclass
class SqlExport:
    """The statement of one export and its parameters; `lines` runs it and then holds `summary`."""

    session: Session
    aggregated: bool
    sql: str
    params: dict[str, Any]
    plan: LinePlan
    summary: Summary | None = None
    columnar: str | None = None  # the statement of `tables` (postgres_columns.py), where it applies

    def _raw(self) -> Any:
        raw = self.session.connection().connection.driver_connection
        assert raw is not None, "the session's connection is closed"
        return raw

    def _statement(self) -> str:
        from psycopg import ClientCursor

        return ClientCursor(self._raw()).mogrify(self.sql, self.params)

    def lines(self) -> Iterator[tuple[list[tuple[str, bytes]], LineStats]]:
        """Batches of ``WRITE_BATCH`` (split, JSON line) and their figures, in row order; once the
        last batch is out, `summary` holds the figures of the statement's last row."""
        raw = self._raw()
        statement = self._statement()
        joiner = Lines(self.plan)
        row_sep, line_sep = ROW_SEP.encode(), LINE_SEP.encode()
        single = self.aggregated
        with raw.cursor() as cursor:
            self._settings(cursor)
            batch: list[tuple[str, bytes]] = []
            stats = LineStats()
            with cursor.copy(
                f"COPY ({statement}) TO STDOUT (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')"
            ) as copy:
                for data in copy:
                    fields = bytes(data).split(b"\t")
                    if fields[0] == b"summary":
                        self.summary = self._summary(json.loads(fields[-1]))
                        continue
                    name = "test" if fields[0] == b"test" else "train"
                    a_chars, b_chars, a_version, b_version = (int(f) for f in fields[1:5])
                    values = fields[5:-1]
                    templates: dict[bytes, bytes] = {}  # by winner, made when first needed
                    for found in fields[-1][:-1].split(line_sep):
                        winner, agreement, margin, *segments = found.split(row_sep)
                        if single:  # one line per comparison: no template for it
                            batch.append((name, joiner.line(values + segments, winner == b"B")))
                        else:
                            template = templates.get(winner)
                            if template is None:
                                template = templates[winner] = joiner.template(values, winner == b"B")
                            batch.append((name, template % tuple(segments)))
                        a_wins = winner == b"A"
                        stats.splits.append(name)
                        stats.agreements.append(float(agreement))
                        stats.margins.append(float(margin))
                        stats.chosen_chars.append(a_chars if a_wins else b_chars)
                        stats.rejected_chars.append(b_chars if a_wins else a_chars)
                        stats.chosen_versions.append(a_version if a_wins else b_version)
                        stats.rejected_versions.append(b_version if a_wins else a_version)
                        if len(batch) >= WRITE_BATCH:
                            yield batch, stats
                            batch, stats = [], LineStats()
            if batch:
                yield batch, stats

    def _settings(self, cursor: Any) -> None:
        cursor.execute("SET LOCAL extra_float_digits = 1")  # floats' shortest text, as Python's repr
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")  # the texts' joins and sorts in memory
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # rows, then the summary row
        cursor.execute(
            "SET LOCAL jit = off"
        )  # compiling the statement's expressions costs more than it saves

    def tables(self, columns: list[Column]) -> Iterator[tuple[ColumnBatch, LineStats]]:
        """`lines` for Parquet where `columnar` applies: batches of ``WRITE_BATCH`` lines as Arrow
        tables in the Parquet writer's schema, read from a CSV COPY without JSON."""
        import pyarrow as pa
        import pyarrow.compute as pc
        from psycopg import ClientCursor

        from app.services.exporting.writers import _arrow_type

        assert self.columnar is not None
        raw = self._raw()
        statement = ClientCursor(raw).mogrify(self.columnar, self.params)
        schema = pa.schema([(c.name, _arrow_type(c.kind)) for c in columns])
        reader = ColumnReader(columns, schema, WRITE_BATCH)
        with raw.cursor() as cursor:
            self._settings(cursor)
            with cursor.copy(f"COPY ({statement}) TO STDOUT (FORMAT csv)") as copy:
                for found, batch in reader.batches(copy):
                    a_wins = pc.equal(found.column("winner"), "A")
                    chosen, rejected = ("a_chars", "b_chars"), ("a_vid", "b_vid")
                    stats = LineStats(
                        found.column("split").to_pylist(),
                        found.column("agreement").to_pylist(),
                        found.column("margin").to_pylist(),
                        *(
                            pc.if_else(a_wins, found.column(pair[i]), found.column(pair[1 - i])).to_pylist()
                            for pair in (chosen, rejected) for i in (0, 1)
                        ),
                    )  # fmt: skip
                    yield batch, stats
        assert reader.summary is not None, "the statement ends with its summary row"
        self.summary = self._summary(reader.summary)

    def _summary(self, found: list[Any]) -> Summary:
        (read, comparisons_read, flagged, both_bad, tie_votes, tie, split, below, comparisons, judgments,
         raters, sources) = found  # fmt: skip
        preference = PreferenceStats(judgments_read=read, comparisons_read=comparisons_read)
        dropped = {"flagged": flagged, "both_bad": both_bad, "tie_votes": tie_votes, "tie": tie,
                   "split": split,
                   "below_min_agreement": below}  # fmt: skip
        for reason, count in dropped.items():
            if count:
                preference.dropped[reason] = count
        preference.rows = comparisons if self.aggregated else judgments
        return Summary(comparisons, judgments, set(raters or ()), dict(sources or {}), preference)


def sql_export(
    session: Session,
    *,
    project: Project,
    spec: ComparisonExport,
    columns: list[Column],
    rules: RuleSet,
    selection: JudgmentFilter,
    rater: Pseudonyms,
) -> SqlExport | None:
    """The PostgreSQL statement of a comparisons export, or None where the Python path must run."""
    if spec.format not in ("jsonl", "parquet") or selection.judgment_ids is not None:
        return None
    rankings = "SELECT EXISTS (SELECT 1 FROM ranking_judgments WHERE project_id = :project)"
    if session.execute(sql_text(rankings), {"project": project.id}).scalar():
        return None  # rows implied by rankings follow the pairs' rows: the Python path writes both
    connection = session.connection()
    samplings = _samplings(session, project.id)
    if samplings is None:
        return None
    aggregated = rules.aggregation != "per_rater"
    judgments = judgments_query(project.id, selection).compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    sql, plan = statement(str(judgments), columns, spec.resolved_layout, aggregated)
    columnar = None
    if spec.format == "parquet":
        columnar = columnar_sql(str(judgments), columns, spec.resolved_layout, aggregated)
    user_ids = sorted(session.execute(sql_text("SELECT id FROM users")).scalars())
    versions = VersionNames(session)
    version_rows = session.execute(sql_text("SELECT id, name FROM model_versions ORDER BY id")).all()
    if len(version_rows) > MAX_LOOKUP:
        return None
    bases = [versions.base(vid) for vid, _ in version_rows]
    params = dict(judgments.params)
    params.update(
        x_excluded=sorted(selection.exclude_flags),
        x_user_ids=user_ids,
        x_user_names=[rater(user_id) for user_id in user_ids],
        x_both_bad=rules.include_both_bad,
        x_ignore_ties=rules.ties == "ignore",
        x_majority=rules.aggregation == "majority",
        x_min_agreement=float(rules.min_agreement),
        x_threshold=str(split_threshold(spec.test_fraction)),
        x_seed=str(spec.split_seed),
        x_version_ids=[vid for vid, _ in version_rows],
        x_version_names=[_json_str(name) for _, name in version_rows],
        x_version_bases=[_json_str(base) if base else None for base in bases],
        x_sampling_raw=list(samplings),
        x_sampling_canonical=[_json_str(value) for value in samplings.values()],
        x_version_texts=[name for _, name in version_rows],
        x_version_base_texts=[base or None for base in bases],
        x_sampling_texts=list(samplings.values()),
    )
    return SqlExport(session, aggregated, sql, params, plan, columnar=columnar)


def _samplings(session: Session, project_id: int) -> dict[str, str] | None:
    """The project's distinct sampling settings (JSONB text) -> the exporter's canonical text."""
    found = session.execute(
        sql_text(
            "SELECT DISTINCT s.sampling::text FROM completions s JOIN prompts p ON p.id = s.prompt_id"
            " WHERE p.project_id = :project AND s.sampling IS NOT NULL LIMIT :limit"
        ),
        {"project": project_id, "limit": MAX_LOOKUP + 1},
    ).scalars()
    out = {}
    for raw in found:
        value = json.loads(raw)
        out[raw] = json.dumps(value, sort_keys=True) if value else ""
    return None if len(out) > MAX_LOOKUP else out
