"""The PostgreSQL row path: judgments through a raw psycopg named cursor, as plain tuples.

The same rows as `rows.sqlalchemy_rows` (the same query, the same `decide_records`), faster on
large projects: no ORM or SQLAlchemy ``Row`` objects are built per judgment, flags arrive as
text (almost always ``'[]'``), and prompts are cached across batches.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from app.services.preferences.records import VersionNames, decide_records, judgments_query
from app.services.preferences.rules import JudgmentFilter, PreferenceRow, PreferenceStats, RuleSet, Side

PG_READ_BATCH = 10_000  # judgments per fetch of the named cursor
PROMPT_CACHE = 10_000  # prompts kept between batches (a prompt may recur in later comparisons)


def postgres_rows(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats,
) -> Iterator[PreferenceRow]:
    """The rows read through psycopg's named cursor (PostgreSQL only).

    One narrow query streams the judgments (ordered by comparison); the texts of each fetched
    batch come from one lookup keyed by comparison id, with prompts cached across batches.
    """
    from psycopg.rows import tuple_row

    connection = session.connection()
    raw = connection.connection.driver_connection
    compiled = judgments_query(project_id, selection).compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    # flags as text: almost always '[]', parsed only when not.
    sql = str(compiled).replace("judgments.flags,", "judgments.flags::text,", 1)
    assert raw is not None, "the session's connection is closed"
    texts = _PgTexts(raw, VersionNames(session))
    loads = json.loads
    no_flags: list[str] = []

    def flags_of(text: str) -> list[str]:
        return no_flags if text == "[]" else loads(text)

    with raw.cursor(name=f"rlhf_export_{id(session):x}", row_factory=tuple_row) as cursor:
        cursor.itersize = PG_READ_BATCH
        cursor.execute(sql, compiled.params)
        pending: list[tuple[Any, ...]] = []  # the judgments of a comparison cut by a batch boundary
        while True:
            fetched = cursor.fetchmany(PG_READ_BATCH)
            last = not fetched
            records = pending + fetched
            if not last:
                # Hold back the last comparison: its judgments may continue in the next batch.
                cut = len(records)
                tail_id = records[-1][1]
                while cut and records[cut - 1][1] == tail_id:
                    cut -= 1
                records, pending = records[:cut], records[cut:]
            decided: list[PreferenceRow] = []
            for comparison_id, group in itertools.groupby(records, key=_comparison_of):
                decided += decide_records(
                    comparison_id, group, rules=rules, selection=selection, stats=stats, flags_of=flags_of
                )
            if decided:
                texts.attach(decided)
                stats.rows += len(decided)
                yield from decided
            if last:
                break


def _comparison_of(record: tuple[Any, ...]) -> Any:
    return record[1]


class _PgTexts:
    """Prompts and completion texts for a batch of rows: one query per batch, prompts cached;
    the names of the versions that sampled the texts from `VersionNames`."""

    def __init__(self, raw: Any, names: VersionNames) -> None:
        self.raw = raw
        self.names = names
        self.prompts: dict[int, tuple[list[dict[str, str]], str]] = {}
        # sampling settings repeat across completions: parsed (and canonically dumped) once
        self.samplings: dict[str | None, tuple[dict[str, Any] | None, str]] = {}

    def _sampling(self, text: str | None) -> tuple[dict[str, Any] | None, str]:
        found = self.samplings.get(text)
        if found is None:
            if len(self.samplings) >= PROMPT_CACHE:
                self.samplings.clear()
            value = None if text is None else json.loads(text)
            # the exporter's canonical text of the settings (Side.sampling_json)
            found = self.samplings[text] = (value, json.dumps(value, sort_keys=True) if value else "")
        return found

    def attach(self, rows: list[PreferenceRow]) -> None:
        from psycopg.rows import tuple_row

        comparison_ids = sorted({row.comparison_id for row in rows})
        prompts = self.prompts
        missing = sorted({row.prompt_id for row in rows if row.prompt_id not in prompts})
        with self.raw.cursor(row_factory=tuple_row) as cur:
            if missing:
                if len(prompts) + len(missing) > PROMPT_CACHE:
                    prompts.clear()
                cur.execute("SELECT id, messages, content_hash FROM prompts WHERE id = ANY(%s)", (missing,))
                for prompt_id, messages, content_hash in cur:
                    prompts[prompt_id] = (messages, content_hash)
            cur.execute(_PG_SIDES, (comparison_ids,))
            sampling = self._sampling
            sides = {
                record[0]: (
                    _side(record[1:5], sampling(record[5])),
                    _side(record[6:10], sampling(record[10])),
                )
                for record in cur
            }
        for pair in sides.values():
            self.names.name_sides(*pair)
        for row in rows:
            a, b = sides[row.comparison_id]
            row.messages, row.prompt_hash = prompts[row.prompt_id]
            if row.winner == "A":
                row.chosen_side, row.rejected_side = a, b
            else:
                row.chosen_side, row.rejected_side = b, a


def _side(columns: tuple[Any, ...], sampling: tuple[dict[str, Any] | None, str]) -> Side:
    """A side from (id, text, model name, model version id) and its parsed and canonical sampling."""
    completion_id, text, model_name, model_version_id = columns
    return Side(completion_id, text, model_name, model_version_id, sampling[0], sampling[1])


_PG_SIDES = """
SELECT c.id, a.id, a.text, a.model_name, a.model_version_id, a.sampling::text,
       b.id, b.text, b.model_name, b.model_version_id, b.sampling::text
FROM comparisons c
JOIN completions a ON a.id = c.completion_a_id
JOIN completions b ON b.id = c.completion_b_id
WHERE c.id = ANY(%s)
"""
