"""The PostgreSQL export path: PostgreSQL decides the rows and writes each JSON line itself.

`sql_lines` turns a comparisons export (JSONL or Parquet, any layout, any filter) into one
``COPY (SELECT …) TO STDOUT``: the judgments query of services/preferences, the aggregation rules
of `rules.decide` (ties, both bad, excluded flags, majority, mean strength, per rater, gold and
resolved pairs, minimum agreement), the train/test split of `split_of`, the pseudonyms, and every
column of the row as the JSON text that `writers.JsonlWriter` writes. Python only routes the lines
by split, writes them (JSONL) or parses them with Arrow's JSON reader (Parquet), and adds up the
dataset card's figures; no Python object is built per judgment.

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
  prompts are the stored JSONB text, which prints ``{"role": …, "content": …}`` messages as
  ``json.dumps`` does.
* Sampling settings (``*_sampling``, Python's ``json.dumps(sort_keys=True)``), pseudonyms (an
  HMAC under the server's key) and version names are computed in Python for the few distinct
  values and joined in; a project with more than `MAX_LOOKUP` distinct sampling settings takes
  the Python path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from app.models import Project
from app.schemas.export import ComparisonExport
from app.services.exporting.columns import Column, Pseudonyms
from app.services.preferences.records import VersionNames, judgments_query
from app.services.preferences.rules import JudgmentFilter, PreferenceStats, RuleSet

WRITE_BATCH = 5000  # rows per batch, as prepare.WRITE_BATCH: Parquet row groups depend on it
WORK_MEM = "128MB"  # PostgreSQL's memory for the export's hash joins and sorts (this transaction only)
MAX_LOOKUP = 1024  # distinct sampling settings or model versions looked up in a list; more: Python path


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
    """What the card reports beyond the rows' own figures (one aggregate query after the rows)."""

    comparisons: int
    judgments: int
    raters: set[int]
    sources: dict[str, int]
    preference: PreferenceStats


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


def _round6(expr: str) -> str:
    """SQL: Python's ``round(x, 6) * 10**6`` (numeric) of the float8 ``expr``: half to even, from
    the shortest text of the double."""
    m = f"(({expr})::text)::numeric * 1000000"
    return f"(CASE WHEN mod({m}, 1) = 0.5 THEN 2 * round({m} / 2) ELSE round({m}) END)"


def _f6(q: str) -> str:
    """SQL: ``repr(round(x, 6))`` from ``q``, the numeric of `_round6` (x >= 0)."""
    return (
        f"(CASE WHEN mod({q}, 1000000) = 0 THEN ({q}::bigint / 1000000)::text || '.0'"
        f" ELSE ({q}::float8 / 1000000)::text END)"
    )


def _str(expr: str) -> str:
    return f"to_json(({expr})::text)::text"


def _time(expr: str) -> str:
    """SQL: ``'"' + value.astimezone(UTC).isoformat() + '"'`` of a timestamptz."""
    utc = f"(({expr}) AT TIME ZONE 'UTC')"
    return f"""'"' || replace(to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '') || '+00:00"'"""


def _bool(expr: str) -> str:
    return f"CASE WHEN {expr} THEN 'true' ELSE 'false' END"


def _assistant(text: str) -> str:
    return f"""'{{"role": "assistant", "content": ' || {_str(text)} || '}}'"""


def _transcript(messages: str, response: str | None) -> str:
    """SQL: `columns.transcript` of a JSONB messages array (and an assistant response)."""
    turns = (
        "(SELECT string_agg(E'\\n\\n'"
        f" || CASE WHEN m->>'role' = 'assistant' THEN 'Assistant' ELSE 'Human' END"
        f" || ': ' || (m->>'content'), '' ORDER BY i) FROM jsonb_array_elements({messages})"
        " WITH ORDINALITY AS t(m, i))"
    )
    turns = f"coalesce({turns}, '')"
    if response is not None:
        turns = f"{turns} || E'\\n\\nAssistant: ' || {response}"
    return turns


def _prompt_text(messages: str) -> str:
    return (
        f"CASE WHEN jsonb_array_length({messages}) = 1 AND {messages}->0->>'role' = 'user'"
        f" THEN {messages}->0->>'content' ELSE ltrim({_transcript(messages, None)}, E'\\n') END"
    )


def _with_assistant(messages: str, text: str) -> str:
    """SQL: the JSON text of ``[*messages, {"role": "assistant", "content": text}]``."""
    return (
        f"CASE WHEN jsonb_array_length({messages}) = 0 THEN '[' ELSE"
        f" left(({messages})::text, -1) || ', ' END || {_assistant(text)} || ']'"
    )


def _column_sql(name: str, aggregated: bool) -> str:
    """SQL for the JSON text of one column, over the final query's aliases (see `_SELECT`)."""
    layout = {
        "prompt": "tx.messages::text",
        "chosen": f"'[' || {_assistant('tx.ch_text')} || ']'",
        "rejected": f"'[' || {_assistant('tx.rj_text')} || ']'",
    }
    common = {
        "margin": "x.margin_json",
        "agreement": "x.agreement_json",
        "votes": "x.n::text",
        "comparison_id": "x.cid::text",
        "ranking_id": "'0'",
        "prompt_id": "x.prompt_id::text",
        "kind": _str("x.kind"),
        "gold_choice": _str("coalesce(x.gold, '')"),
        "chosen_completion": _str("x.winner"),
        "chosen_model": _str("coalesce(nullif(tx.ch_model, ''), nullif(tx.ch_base, ''), '')"),
        "chosen_model_version_id": "coalesce(tx.ch_vid, 0)::text",
        "chosen_model_version": _str("coalesce(tx.ch_vname, '')"),
        "chosen_sampling": _str("coalesce(tx.ch_sampling, '')"),
        "rejected_model": _str("coalesce(nullif(tx.rj_model, ''), nullif(tx.rj_base, ''), '')"),
        "rejected_model_version_id": "coalesce(tx.rj_vid, 0)::text",
        "rejected_model_version": _str("coalesce(tx.rj_vname, '')"),
        "rejected_sampling": _str("coalesce(tx.rj_sampling, '')"),
        "split": "CASE WHEN x.test THEN '\"test\"' ELSE '\"train\"' END",
    }
    aggregated_columns = {
        "judgment_ids": "'[' || x.judgment_ids || ']'",
        "raters": "'[' || x.raters || ']'",
        "choices": "'[' || x.choices || ']'",
        "strengths": "'[' || x.strengths || ']'",
        "both_bad_votes": "x.both_bad_votes::text",
        "flags": (
            "CASE WHEN x.flag_lists IS NULL THEN '\"\"' ELSE to_json(coalesce((SELECT string_agg(DISTINCT e"
            ' COLLATE "C", \',\' ORDER BY e COLLATE "C") FROM jsonb_array_elements(x.flag_lists) AS l(a),'
            " jsonb_array_elements_text(l.a) AS f(e)), ''))::text END"
        ),
        "rationales": "'[' || x.rationales || ']'",
        "time_spent_ms": "'[' || x.times || ']'",
        "a_on_left": "'[' || x.lefts || ']'",
        "source": _str("x.sources"),
    }
    vote_columns = {
        "judgment_id": "x.jid::text",
        "rater": "'\"' || x.rater_name || '\"'",
        "source": _str("x.source"),
        "strength": "x.strength::text",
        "both_bad": _bool("x.both_bad"),
        "flags": (
            "CASE WHEN x.flags = '[]'::jsonb THEN '\"\"' ELSE"
            " to_json(array_to_string(ARRAY(SELECT jsonb_array_elements_text(x.flags)), ','))::text END"
        ),
        "rationale": _str("x.rationale"),
        "time_spent_ms": "x.time_spent_ms::text",
        "a_on_left": _bool("x.a_on_left"),
        "created_at": _time("x.created_at"),
    }
    found = {**layout, **common, **(aggregated_columns if aggregated else vote_columns)}
    return found[name]


def _layout_sql(layout: str) -> dict[str, str]:
    if layout == "conversational":
        return {}
    if layout == "implicit":
        return {
            "chosen": _with_assistant("tx.messages", "tx.ch_text"),
            "rejected": _with_assistant("tx.messages", "tx.rj_text"),
        }
    if layout == "text":
        return {
            "prompt": _str(_prompt_text("tx.messages")),
            "chosen": _str("tx.ch_text"),
            "rejected": _str("tx.rj_text"),
        }
    return {  # hh
        "chosen": _str(_transcript("tx.messages", "tx.ch_text")),
        "rejected": _str(_transcript("tx.messages", "tx.rj_text")),
    }


def _line_sql(columns: list[Column], layout: str, aggregated: bool) -> str:
    """SQL: the whole JSON line, ``{"name": value, …}``, as `JsonlWriter`'s template writes it."""
    overrides = _layout_sql(layout)
    parts = []  # concat() builds the line in one buffer; `||` would copy it once per piece
    for i, column in enumerate(columns):
        key = json.dumps(column.name, ensure_ascii=False)
        value = overrides.get(column.name) or _column_sql(column.name, aggregated)
        parts += ["'" + ("{" if i == 0 else ", ") + key.replace("'", "''") + ": '", value]
    return "concat(" + ", ".join([*parts, "'}'"]) + ")"


# The votes read (the judgments query of services/preferences), each marked as counted or not.
_VOTES = """
r AS ({judgments}),
v AS (
  SELECT r.*, ps.name AS rater_name,
         (cardinality(%(x_excluded)s::text[]) > 0 AND r.flags ?| %(x_excluded)s::text[]) AS flagged
  FROM r JOIN unnest(%(x_user_ids)s::int[], %(x_user_names)s::text[]) AS ps(id, name) ON ps.id = r.rater_id
),
c AS (
  SELECT v.*, (NOT flagged AND (%(x_both_bad)s OR NOT both_bad)
               AND NOT (%(x_ignore_ties)s AND choice = 'tie')) AS counted
  FROM v
),
t AS (
  SELECT cid, min(prompt_id) AS prompt_id, min(kind) AS kind, min(gold) AS gold,
         count(*) FILTER (WHERE counted) AS n,
         count(*) FILTER (WHERE counted AND choice = 'A') AS na,
         count(*) FILTER (WHERE counted AND choice = 'B') AS nb,
         coalesce(sum(strength) FILTER (WHERE counted AND choice = 'A'), 0) AS sa,
         coalesce(sum(strength) FILTER (WHERE counted AND choice = 'B'), 0) AS sb{aggregates}
  FROM c GROUP BY cid
)"""

_AGGREGATES = """,
         string_agg(jid::text, ', ' ORDER BY jid) FILTER (WHERE counted) AS judgment_ids,
         string_agg('"' || rater_name || '"', ', ' ORDER BY jid) FILTER (WHERE counted) AS raters,
         string_agg('"' || choice || '"', ', ' ORDER BY jid) FILTER (WHERE counted) AS choices,
         string_agg(strength::text, ', ' ORDER BY jid) FILTER (WHERE counted) AS strengths,
         count(*) FILTER (WHERE counted AND both_bad) AS both_bad_votes,
         jsonb_agg(flags) FILTER (WHERE counted AND flags <> '[]'::jsonb) AS flag_lists,
         string_agg(to_json(rationale)::text, ', ' ORDER BY jid) FILTER (WHERE counted) AS rationales,
         string_agg(time_spent_ms::text, ', ' ORDER BY jid) FILTER (WHERE counted) AS times,
         string_agg(CASE WHEN a_on_left THEN 'true' ELSE 'false' END, ', ' ORDER BY jid)
             FILTER (WHERE counted) AS lefts,
         string_agg(DISTINCT source::text COLLATE "C", '+' ORDER BY source::text COLLATE "C")
             FILTER (WHERE counted) AS sources"""

# per_rater: one row per counted A/B vote; agreement = votes for its choice / counted votes.
_PER_RATER_ROWS = """,
tt AS MATERIALIZED (
  SELECT t.cid, t.prompt_id, t.kind, t.gold, t.n, t.na::float8 / t.n::float8 AS agreement_a,
         t.nb::float8 / t.n::float8 AS agreement_b, {test} AS test
  FROM t JOIN prompts pp ON pp.id = t.prompt_id WHERE t.n > 0
),
d AS (
  SELECT c.jid, c.cid, tt.prompt_id, tt.kind, tt.gold, c.choice AS winner, tt.n, c.strength, c.both_bad,
         c.flags, c.rationale, c.time_spent_ms, c.a_on_left, c.source, c.created_at, c.rater_id,
         c.rater_name, c.strength::text || '.0' AS margin_json, tt.test,
         CASE WHEN c.choice = 'A' THEN tt.agreement_a ELSE tt.agreement_b END AS agreement_x
  FROM c JOIN tt ON tt.cid = c.cid
  WHERE c.counted AND c.choice <> 'tie'
),
fa AS MATERIALIZED (  -- the JSON text of each distinct agreement, computed once
  SELECT x, {agreement_json} AS json FROM (SELECT DISTINCT agreement_x AS x FROM d) s
),
decided AS (SELECT d.*, fa.json AS agreement_json FROM d JOIN fa ON fa.x = d.agreement_x)"""

# majority / mean_strength: one row per comparison, as `decide`.
_AGGREGATED_ROWS = """,
w AS (
  SELECT t.*,
         (t.kind IN ('gold', 'resolved') AND t.gold IS NOT NULL) AS labelled,
         CASE WHEN t.kind IN ('gold', 'resolved') AND t.gold IS NOT NULL THEN t.gold
              WHEN %(x_majority)s THEN CASE WHEN t.na > t.nb THEN 'A' WHEN t.nb > t.na THEN 'B' END
              ELSE CASE WHEN t.sa > t.sb THEN 'A' WHEN t.sb > t.sa THEN 'B' END END AS winner
  FROM t WHERE t.n > 0
),
d AS (
  SELECT w.*, w.cid AS jid,
         CASE WHEN NOT w.labelled AND NOT %(x_majority)s THEN abs(w.sa - w.sb)::float8 / w.n::float8
              WHEN (CASE WHEN w.winner = 'A' THEN w.na ELSE w.nb END) = 0 THEN 0.0::float8
              ELSE ((CASE WHEN w.winner = 'A' THEN w.na ELSE w.nb END)::float8 / w.n::float8)
                 * ((CASE WHEN w.winner = 'A' THEN w.sa ELSE w.sb END)::float8
                    / (CASE WHEN w.winner = 'A' THEN w.na ELSE w.nb END)::float8) END AS margin_x,
         (CASE WHEN w.winner = 'A' THEN w.na WHEN w.winner = 'B' THEN w.nb ELSE 0 END)::float8
             / w.n::float8 AS agreement_x
  FROM w WHERE w.winner IN ('A', 'B')
),
fa AS MATERIALIZED (  -- the JSON text of each distinct agreement and margin, computed once
  SELECT x, {agreement_json} AS json FROM (SELECT DISTINCT agreement_x AS x FROM d) s
),
fm AS MATERIALIZED (SELECT x, {margin_json} AS json FROM (SELECT DISTINCT margin_x AS x FROM d) s),
decided AS (
  SELECT d.*, fa.json AS agreement_json, fm.json AS margin_json, {test} AS test
  FROM d JOIN fa ON fa.x = d.agreement_x JOIN fm ON fm.x = d.margin_x JOIN prompts pp ON pp.id = d.prompt_id
)"""

# `split_of` in SQL: test when the first 8 bytes of sha256("<seed>:<prompt hash>"), unsigned, are
# below the threshold of `split_threshold`.
_TEST = (
    "(%(x_threshold)s::numeric > 0"
    " AND ((h.u)::numeric + CASE WHEN h.u < 0 THEN 18446744073709551616 ELSE 0 END)"
    " < %(x_threshold)s::numeric)"
).replace(
    "h.u",
    "('x' || encode(substring(sha256(convert_to(%(x_seed)s || ':' || pp.content_hash, 'UTF8'))"
    " FROM 1 FOR 8), 'hex'))::bit(64)::bigint",
)

_SIDE = """
         {side}.text AS {side}_text, {side}.model_name AS {side}_model, {side}.model_version_id AS {side}_vid,
         (%(x_version_names)s::text[])[array_position(%(x_version_ids)s::int[], {side}.model_version_id)]
             AS {side}_vname,
         (%(x_version_bases)s::text[])[array_position(%(x_version_ids)s::int[], {side}.model_version_id)]
             AS {side}_base,
         (%(x_sampling_canonical)s::text[])[array_position(%(x_sampling_raw)s::text[], {side}.sampling::text)]
             AS {side}_sampling"""

_SELECT = (
    """
SELECT CASE WHEN x.test THEN 'test' ELSE 'train' END, x.agreement_json, x.margin_json,
       char_length(tx.ch_text), char_length(tx.rj_text), coalesce(tx.ch_vid, 0), coalesce(tx.rj_vid, 0),
       {line}
FROM (
  SELECT decided.* FROM decided
  WHERE decided.agreement_json::float8 >= %(x_min_agreement)s::float8
  ORDER BY decided.cid, decided.jid
) x
CROSS JOIN LATERAL (
  -- one row's texts, looked up by key in the rows' order (no sort of the wide rows)
  SELECT p.messages,"""
    + _SIDE.format(side="ch")
    + ","
    + _SIDE.format(side="rj")
    + """
  FROM comparisons cc
  JOIN prompts p ON p.id = cc.prompt_id
  JOIN completions ch ON ch.id = CASE WHEN x.winner = 'A' THEN cc.completion_a_id ELSE cc.completion_b_id END
  JOIN completions rj ON rj.id = CASE WHEN x.winner = 'A' THEN cc.completion_b_id ELSE cc.completion_a_id END
  WHERE cc.id = x.cid OFFSET 0
) tx
ORDER BY x.cid, x.jid
"""
)

_SUMMARY_PER_RATER = """
SELECT (SELECT count(*) FROM c), (SELECT count(DISTINCT cid) FROM c),
       (SELECT count(*) FILTER (WHERE flagged) FROM c),
       (SELECT count(*) FILTER (WHERE NOT flagged AND both_bad AND NOT %(x_both_bad)s) FROM c),
       (SELECT count(*) FILTER (WHERE NOT flagged AND (%(x_both_bad)s OR NOT both_bad) AND choice = 'tie')
        FROM c),
       0, 0,
       (SELECT count(*) FROM decided WHERE agreement_json::float8 < %(x_min_agreement)s::float8),
       (SELECT count(DISTINCT cid) FROM kept), (SELECT count(*) FROM kept),
       (SELECT array_agg(DISTINCT rater_id) FROM kept),
       (SELECT json_object_agg(source, n) FROM (SELECT source, count(*) AS n FROM kept GROUP BY source) s)
"""

_SUMMARY_AGGREGATED = """
SELECT (SELECT count(*) FROM c), (SELECT count(DISTINCT cid) FROM c),
       (SELECT count(*) FILTER (WHERE flagged) FROM c),
       (SELECT count(*) FILTER (WHERE NOT flagged AND both_bad AND NOT %(x_both_bad)s) FROM c),
       (SELECT count(*) FILTER (WHERE NOT flagged AND (%(x_both_bad)s OR NOT both_bad) AND %(x_ignore_ties)s
                                AND choice = 'tie') FROM c),
       (SELECT count(*) FROM w WHERE winner IS NULL AND NOT labelled AND (%(x_majority)s AND na = 0
                                     OR NOT %(x_majority)s AND na + nb = 0) OR winner = 'tie'),
       (SELECT count(*) FROM w WHERE winner IS NULL AND NOT labelled AND (%(x_majority)s AND na > 0
                                     OR NOT %(x_majority)s AND na + nb > 0)),
       (SELECT count(*) FROM decided WHERE agreement_json::float8 < %(x_min_agreement)s::float8),
       (SELECT count(*) FROM kept), (SELECT count(*) FROM kept_votes),
       (SELECT array_agg(DISTINCT rater_id) FROM kept_votes),
       (SELECT json_object_agg(source, n)
        FROM (SELECT source, count(*) AS n FROM kept_votes GROUP BY source) s)
"""


@dataclass
class SqlExport:
    """The statement of one export and its parameters; `lines` runs it, `summary` the figures."""

    session: Session
    aggregated: bool
    sql_lines: str
    sql_summary: str
    params: dict[str, Any]

    def _raw(self) -> Any:
        raw = self.session.connection().connection.driver_connection
        assert raw is not None, "the session's connection is closed"
        return raw

    def _statement(self, sql: str) -> str:
        from psycopg import ClientCursor

        return ClientCursor(self._raw()).mogrify(sql, self.params)

    def lines(self) -> Iterator[tuple[list[tuple[str, bytes]], LineStats]]:
        """Batches of ``WRITE_BATCH`` (split, JSON line) and their figures, in row order."""
        raw = self._raw()
        statement = self._statement(self.sql_lines)
        with raw.cursor() as cursor:
            cursor.execute("SET LOCAL extra_float_digits = 1")  # floats' shortest text, as Python's repr
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")  # the texts' joins and sorts in memory
            batch: list[tuple[str, bytes]] = []
            stats = LineStats()
            with cursor.copy(
                f"COPY ({statement}) TO STDOUT (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')"
            ) as copy:
                for data in copy:
                    split, agreement, margin, chosen, rejected, chosen_version, rejected_version, line = (
                        bytes(data).split(b"\t", 7)
                    )
                    name = "test" if split == b"test" else "train"
                    batch.append((name, line))
                    stats.splits.append(name)
                    stats.agreements.append(float(agreement))
                    stats.margins.append(float(margin))
                    stats.chosen_chars.append(int(chosen))
                    stats.rejected_chars.append(int(rejected))
                    stats.chosen_versions.append(int(chosen_version))
                    stats.rejected_versions.append(int(rejected_version))
                    if len(batch) >= WRITE_BATCH:
                        yield batch, stats
                        batch, stats = [], LineStats()
            if batch:
                yield batch, stats

    def summary(self) -> Summary:
        with self._raw().cursor() as cursor:
            cursor.execute(self._statement(self.sql_summary))
            found = cursor.fetchone()
        assert found is not None
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
    names = (
        "jid, cid, rater_id, choice, strength, both_bad, prompt_id, flags, rationale, time_spent_ms,"
        " a_on_left,"
        " source, created_at, kind, gold"
    )
    votes = _VOTES.format(
        judgments=f"SELECT * FROM ({judgments}) AS r0({names})",
        aggregates=_AGGREGATES if aggregated else "",
    )
    if aggregated:
        rows = _AGGREGATED_ROWS.format(
            agreement_json=_f6(_round6("s.x")), margin_json=_f6(_round6("s.x")), test=_TEST
        )
    else:
        rows = _PER_RATER_ROWS.format(test=_TEST, agreement_json=_f6(_round6("s.x")))
    line = _line_sql(columns, spec.resolved_layout, aggregated)
    head = "WITH " + votes.lstrip() + rows
    sql_lines = head + _SELECT.format(line=line)
    if aggregated:
        summary = (
            head + ", kept AS (SELECT cid FROM decided"
            " WHERE agreement_json::float8 >= %(x_min_agreement)s::float8),"
            " kept_votes AS (SELECT c.rater_id, c.source FROM c JOIN kept ON kept.cid = c.cid"
            " WHERE c.counted)" + _SUMMARY_AGGREGATED
        )
    else:
        summary = (
            head + ", kept AS (SELECT cid, rater_id, source FROM decided"
            " WHERE agreement_json::float8 >= %(x_min_agreement)s::float8)" + _SUMMARY_PER_RATER
        )
    user_ids = sorted(session.execute(sql_text("SELECT id FROM users")).scalars())
    versions = VersionNames(session)
    version_rows = session.execute(sql_text("SELECT id, name FROM model_versions ORDER BY id")).all()
    if len(version_rows) > MAX_LOOKUP:
        return None
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
        x_version_names=[name for _, name in version_rows],
        x_version_bases=[versions.base(vid) for vid, _ in version_rows],
        x_sampling_raw=list(samplings),
        x_sampling_canonical=list(samplings.values()),
    )
    return SqlExport(session, aggregated, sql_lines, summary, params)


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
