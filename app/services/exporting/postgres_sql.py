"""The SQL text of the PostgreSQL export (postgres.py): the statement that decides the rows of a
comparisons export, writes the pieces of each JSON line `writers.JsonlWriter` writes, and ends
with one row of the dataset card's figures, so that the judgments are read once.

It writes one row per comparison that has lines, in comparison order (postgres_lines.py says
which piece is written where): split, completion A's and B's lengths and model version ids, the
comparison's values (`LinePlan.comparison_sql`), each side field's value showing A then B
(`LinePlan.side_sql`), then its lines in line order, separated by ``LINE_SEP``, each as its
winner, agreement and margin and its row segments, separated by ``ROW_SEP``. The last row has
``summary`` as its split and, in place of the lines, the JSON array `postgres.SqlExport.lines`
reads as the card's `Summary`.
"""

from __future__ import annotations

from app.services.exporting.columns import Column
from app.services.exporting.postgres_lines import LinePlan, line_plan


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
  FROM {source} GROUP BY cid
)"""

# The aggregates of a majority or mean-strength row: the lists are in judgment order because
# their input is (`_SORTED_VOTES`), which PostgreSQL keeps when the aggregation reads a sorted
# subquery with no join; one sort of the votes instead of one per list per comparison.
_SORTED_VOTES = "(SELECT * FROM c ORDER BY cid, jid) c"
_SORTED_DECIDED = "(SELECT * FROM decided ORDER BY cid, jid)"  # a per-rater comparison's lines
_AGGREGATES = """,
         string_agg(jid::text, ', ') FILTER (WHERE counted) AS judgment_ids,
         string_agg('"' || rater_name || '"', ', ') FILTER (WHERE counted) AS raters,
         string_agg('"' || choice || '"', ', ') FILTER (WHERE counted) AS choices,
         string_agg(strength::text, ', ') FILTER (WHERE counted) AS strengths,
         count(*) FILTER (WHERE counted AND both_bad) AS both_bad_votes,
         jsonb_agg(flags) FILTER (WHERE counted AND flags <> '[]'::jsonb) AS flag_lists,
         string_agg(to_json(rationale)::text, ', ') FILTER (WHERE counted) AS rationales,
         string_agg(time_spent_ms::text, ', ') FILTER (WHERE counted) AS times,
         string_agg(CASE WHEN a_on_left THEN 'true' ELSE 'false' END, ', ')
             FILTER (WHERE counted) AS lefts,
         string_agg(DISTINCT source::text COLLATE "C", '+' ORDER BY source::text COLLATE "C")
             FILTER (WHERE counted) AS sources"""

# per_rater: one row per counted A/B vote; agreement = votes for its choice / counted votes.
_PER_RATER_ROWS = """,
tt AS MATERIALIZED (
  SELECT t.cid, t.prompt_id, t.kind, t.gold, t.n, t.na::float8 / t.n::float8 AS agreement_a,
         t.nb::float8 / t.n::float8 AS agreement_b
  FROM t WHERE t.n > 0
),
d AS (
  SELECT c.jid, c.cid, tt.prompt_id, tt.kind, tt.gold, c.choice AS winner, tt.n, c.strength, c.both_bad,
         c.flags, c.rationale, c.time_spent_ms, c.a_on_left, c.source, c.created_at, c.rater_id,
         c.rater_name, c.strength::text || '.0' AS margin_json,
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
  SELECT d.*, fa.json AS agreement_json, fm.json AS margin_json
  FROM d JOIN fa ON fa.x = d.agreement_x JOIN fm ON fm.x = d.margin_x
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
             AS {side}_sampling,
         (%(x_version_texts)s::text[])[array_position(%(x_version_ids)s::int[], {side}.model_version_id)]
             AS {side}_vname_text,
         (%(x_version_base_texts)s::text[])[array_position(%(x_version_ids)s::int[], {side}.model_version_id)]
             AS {side}_base_text,
         (%(x_sampling_texts)s::text[])[array_position(%(x_sampling_raw)s::jsonb[], {side}.sampling)]
             AS {side}_sampling_text"""

# The texts of comparison ``x.cid`` (prompt messages, split, each completion's text and provenance),
# selected from its row by key, as ``tx``.
TEXTS = (
    "SELECT p.messages, "
    + _TEST.replace("pp.", "p.")
    + " AS test,"
    + _SIDE.format(side="a")
    + ","
    + _SIDE.format(side="b")
    + """
  FROM comparisons cc
  JOIN prompts p ON p.id = cc.prompt_id
  JOIN completions a ON a.id = cc.completion_a_id
  JOIN completions b ON b.id = cc.completion_b_id
  WHERE cc.id = x.cid"""
)

# One row per comparison: its lines' row segments in one field, in line order (see postgres_lines).
_SELECT = (
    """
(SELECT CASE WHEN tx.test THEN 'test' ELSE 'train' END, char_length(tx.a_text), char_length(tx.b_text),
       coalesce(tx.a_vid, 0), coalesce(tx.b_vid, 0), {values}x.lines
FROM (
  SELECT x.cid, {shared}, {lines} AS lines
  FROM {decided} x
  WHERE x.agreement_json::float8 >= %(x_min_agreement)s::float8
  {group}
) x
CROSS JOIN LATERAL (
  -- the comparison's texts, looked up by key in the comparisons' order (no sort of the wide rows)
  """
    + TEXTS
    + """ OFFSET 0
) tx
ORDER BY x.cid)
UNION ALL
SELECT 'summary', 0, 0, 0, 0, {nulls}json_build_array({{figures}})::text"""
)

# The FROM of the summary row (after its SELECT list): the votes' counts and those of the rows.
SUMMARY_FROM = """
FROM (
  SELECT count(*) AS n_read, count(DISTINCT cid) AS n_comparisons,
         count(*) FILTER (WHERE flagged) AS n_flagged,
         count(*) FILTER (WHERE NOT flagged AND both_bad AND NOT %(x_both_bad)s) AS n_both_bad,
         count(*) FILTER (WHERE NOT flagged AND (%(x_both_bad)s OR NOT both_bad) AND {ties}
                          AND choice = 'tie') AS n_tie_votes
  FROM c
) cs{kept}"""

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
  SELECT coalesce(sum(n), 0)::bigint AS n_judgments, array_agg(DISTINCT rater_id) AS raters,
         (SELECT json_object_agg(source, n) FROM (SELECT source, sum(n)::bigint AS n FROM kept_votes
                                                 GROUP BY source) s) AS sources
  FROM kept_votes
) kv
"""

_KEPT_VOTES = """,
kept_votes AS (  -- the counted votes of the rows, counted by source and rater in one pass
  SELECT c.rater_id, c.source, count(*) AS n
  FROM c WHERE c.counted AND c.cid IN (SELECT cid FROM judged WHERE kept)
  GROUP BY c.rater_id, c.source
)"""


def decided(judgments: str, aggregated: bool) -> tuple[str, str]:
    """The ``WITH`` part of an export's statement over ``judgments`` (the judgments query's SQL),
    ending with ``decided`` (each line's decided row), and the summary row's figures and FROM."""
    names = (
        "jid, cid, rater_id, choice, strength, both_bad, prompt_id, flags, rationale, time_spent_ms,"
        " a_on_left, source, created_at, kind, gold"
    )
    votes = _VOTES.format(
        judgments=f"SELECT * FROM ({judgments}) AS r0({names})",
        aggregates=_AGGREGATES if aggregated else "",
        source=_SORTED_VOTES if aggregated else "c",
    )
    number = _f6(_round6("s.x"))
    if aggregated:
        rows = _AGGREGATED_ROWS.format(agreement_json=number, margin_json=number)
        rows += _JUDGED + _KEPT_VOTES
        figures, ties, kept = _FIGURES_AGGREGATED, "%(x_ignore_ties)s", _KEPT_AGGREGATED
    else:
        rows = _PER_RATER_ROWS.format(agreement_json=number) + _JUDGED
        figures, ties, kept = _FIGURES_PER_RATER, "true", _KEPT_PER_RATER
    summary = f"json_build_array({figures})::text" + SUMMARY_FROM.format(ties=ties, kept=kept)
    return "WITH " + votes.lstrip() + rows, summary


def statement(judgments: str, columns: list[Column], layout: str, aggregated: bool) -> tuple[str, LinePlan]:
    """The whole statement of an export over ``judgments`` (the judgments query's SQL), and the
    plan by which its rows' pieces make the lines."""
    head, summary = decided(judgments, aggregated)
    plan = line_plan(columns, layout, aggregated)
    values = "".join(f"{value}, " for value in plan.comparison_sql + plan.side_sql)
    sep = "E'\\x1f'"
    row = ", ".join(
        [
            "x.winner",
            sep,
            "x.agreement_json",
            sep,
            "x.margin_json",
            *(f"{sep}, {s}" for s in plan.segment_sql),
        ]
    )
    nulls = "NULL, " * (len(plan.comparison_sql) + len(plan.side_sql))
    shared = "x.n, x.prompt_id, x.kind, x.gold"
    if aggregated:  # one line per comparison
        lines, source, group = f"concat({row})", "decided", "ORDER BY x.cid"
    else:  # the lines in judgment order, as their input is (see `_SORTED_VOTES`)
        lines, source, group = f"string_agg(concat({row}), E'\\x1e')", _SORTED_DECIDED, "GROUP BY x.cid"
        shared = ", ".join(f"min({value}) AS {value[2:]}" for value in shared.split(", "))
    select = _SELECT.format(
        values=values, shared=shared, lines=lines, decided=source, group=group, nulls=nulls
    )
    return head + select.replace("json_build_array({figures})::text", summary), plan
