"""The SQL text of the PostgreSQL export (postgres.py): the statement that decides the rows of a
comparisons export, writes each as the JSON line `writers.JsonlWriter` writes, and ends with one
row of the dataset card's figures, so that the judgments are read once.

Its result columns: split, agreement, margin, chosen length, rejected length, chosen version id,
rejected version id, the JSON line; the last row has ``summary`` as its split and, in place of the
line, the JSON array `postgres.SqlExport.lines` reads as the card's `Summary`.
"""

from __future__ import annotations

import json

from app.services.exporting.columns import Column


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


def _word(expr: str) -> str:
    """SQL: the JSON text of a value that needs no escapes (enum values such as kinds and sources)."""
    return f"""'"' || {expr} || '"'"""


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
        "kind": _word("x.kind"),
        "gold_choice": _word("coalesce(x.gold, '')"),
        "chosen_completion": _word("x.winner"),
        "chosen_model": "coalesce(to_json(nullif(tx.ch_model, ''))::text, tx.ch_base, '\"\"')",
        "chosen_model_version_id": "coalesce(tx.ch_vid, 0)::text",
        "chosen_model_version": "coalesce(tx.ch_vname, '\"\"')",
        "chosen_sampling": "coalesce(tx.ch_sampling, '\"\"')",
        "rejected_model": "coalesce(to_json(nullif(tx.rj_model, ''))::text, tx.rj_base, '\"\"')",
        "rejected_model_version_id": "coalesce(tx.rj_vid, 0)::text",
        "rejected_model_version": "coalesce(tx.rj_vname, '\"\"')",
        "rejected_sampling": "coalesce(tx.rj_sampling, '\"\"')",
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
        "source": _word("x.sources"),
    }
    vote_columns = {
        "judgment_id": "x.jid::text",
        "rater": "'\"' || x.rater_name || '\"'",
        "source": _word("x.source"),
        "strength": "x.strength::text",
        "both_bad": _bool("x.both_bad"),
        "flags": (
            "CASE WHEN x.flags = '[]'::jsonb THEN '\"\"' ELSE"
            " to_json(array_to_string(ARRAY(SELECT jsonb_array_elements_text(x.flags)), ','))::text END"
        ),
        "rationale": f"CASE WHEN x.rationale = '' THEN '\"\"' ELSE {_str('x.rationale')} END",
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
         (%(x_sampling_canonical)s::text[])[array_position(%(x_sampling_raw)s::jsonb[], {side}.sampling)]
             AS {side}_sampling"""

_SELECT = (
    """
(SELECT CASE WHEN x.test THEN 'test' ELSE 'train' END, x.agreement_json, x.margin_json,
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
ORDER BY x.cid, x.jid)
UNION ALL
SELECT 'summary', '0', '0', 0, 0, 0, 0, json_build_array({figures})::text
FROM (
  SELECT count(*) AS n_read, count(DISTINCT cid) AS n_comparisons,
         count(*) FILTER (WHERE flagged) AS n_flagged,
         count(*) FILTER (WHERE NOT flagged AND both_bad AND NOT %(x_both_bad)s) AS n_both_bad,
         count(*) FILTER (WHERE NOT flagged AND (%(x_both_bad)s OR NOT both_bad) AND {ties}
                          AND choice = 'tie') AS n_tie_votes
  FROM c
) cs{kept}"""
)

# The card's figures after the rows, in `Summary`'s order: judgments read, comparisons read,
# dropped (flagged, both bad, tie votes, tie, split, below the minimum agreement), then the
# comparisons and judgments behind the rows, their raters and their sources.
_JUDGED = """,
judged AS NOT MATERIALIZED (  -- each decided row, kept or dropped by the minimum agreement
  SELECT d.*, fa.json::float8 >= %(x_min_agreement)s::float8 AS kept FROM d JOIN fa ON fa.x = d.agreement_x
)"""

_FIGURES_PER_RATER = """
  cs.n_read, cs.n_comparisons, cs.n_flagged, cs.n_both_bad, cs.n_tie_votes, 0, 0, ks.n_below,
  ks.n_comparisons, ks.n_judgments, ks.raters, ks.sources
"""

_KEPT_PER_RATER = """
CROSS JOIN (
  SELECT count(*) FILTER (WHERE NOT kept) AS n_below,
         count(DISTINCT cid) FILTER (WHERE kept) AS n_comparisons,
         count(*) FILTER (WHERE kept) AS n_judgments,
         array_agg(DISTINCT rater_id) FILTER (WHERE kept) AS raters,
         (SELECT json_object_agg(source, n) FROM (SELECT source, count(*) AS n FROM judged WHERE kept
                                                 GROUP BY source) s) AS sources
  FROM judged
) ks
"""

_FIGURES_AGGREGATED = """
  cs.n_read, cs.n_comparisons, cs.n_flagged, cs.n_both_bad, cs.n_tie_votes,
  (SELECT count(*) FROM w WHERE winner IS NULL AND NOT labelled AND (%(x_majority)s AND na = 0
                                OR NOT %(x_majority)s AND na + nb = 0) OR winner = 'tie'),
  (SELECT count(*) FROM w WHERE winner IS NULL AND NOT labelled AND (%(x_majority)s AND na > 0
                                OR NOT %(x_majority)s AND na + nb > 0)),
  ks.n_below, ks.n_comparisons, kv.n_judgments, kv.raters, kv.sources
"""

_KEPT_AGGREGATED = """
CROSS JOIN (
  SELECT count(*) FILTER (WHERE NOT kept) AS n_below, count(*) FILTER (WHERE kept) AS n_comparisons
  FROM judged
) ks
CROSS JOIN (
  SELECT count(*) AS n_judgments, array_agg(DISTINCT rater_id) AS raters,
         (SELECT json_object_agg(source, n) FROM (SELECT source, count(*) AS n FROM kept_votes
                                                 GROUP BY source) s) AS sources
  FROM kept_votes
) kv
"""

_KEPT_VOTES = """,
kept_votes AS NOT MATERIALIZED (  -- the counted votes of the rows
  SELECT c.rater_id, c.source FROM c JOIN judged ON judged.cid = c.cid WHERE c.counted AND judged.kept
)"""


def statement(judgments: str, columns: list[Column], layout: str, aggregated: bool) -> str:
    """The whole statement of an export over ``judgments`` (the judgments query's SQL)."""
    names = (
        "jid, cid, rater_id, choice, strength, both_bad, prompt_id, flags, rationale, time_spent_ms,"
        " a_on_left, source, created_at, kind, gold"
    )
    votes = _VOTES.format(
        judgments=f"SELECT * FROM ({judgments}) AS r0({names})",
        aggregates=_AGGREGATES if aggregated else "",
    )
    number = _f6(_round6("s.x"))
    if aggregated:
        rows = _AGGREGATED_ROWS.format(agreement_json=number, margin_json=number, test=_TEST)
        rows += _JUDGED + _KEPT_VOTES
        figures, ties, kept = _FIGURES_AGGREGATED, "%(x_ignore_ties)s", _KEPT_AGGREGATED
    else:
        rows = _PER_RATER_ROWS.format(test=_TEST, agreement_json=number) + _JUDGED
        figures, ties, kept = _FIGURES_PER_RATER, "true", _KEPT_PER_RATER
    line = _line_sql(columns, layout, aggregated)
    return "WITH " + votes.lstrip() + rows + _SELECT.format(line=line, figures=figures, ties=ties, kept=kept)
