"""The JSON values of a PostgreSQL export's columns (postgres_sql.py) and the lines built from them.

The statement writes one row per comparison, not one per line: a line's columns are of three
kinds, and each is written where it is known once.

* ``comparison``: the same in every line of the comparison (the prompt, its ids, kind, split);
  written once per comparison.
* ``side``: a ``chosen_*`` / ``rejected_*`` column, which shows completion A or B depending on
  the line's winner; the value of each completion is written once per comparison, and a line
  takes A's as chosen and B's as rejected when A wins, the other way round when B wins. The texts
  are thus read and escaped once per comparison, however many lines share them.
* ``row``: the line's own (its vote, margin, agreement, chosen completion); consecutive row
  columns are written together, with their keys, as one segment of the line.

`Lines` joins the pieces with the keys into the line `writers.JsonlWriter` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.services.exporting.columns import Column

_COMPARISON = {"prompt", "votes", "comparison_id", "ranking_id", "prompt_id", "kind", "gold_choice", "split"}
_SIDES = ("chosen", "rejected")
ROW_SEP = "\x1f"  # between a line's row segments: JSON text holds no raw control characters
LINE_SEP = "\x1e"  # between the lines of one comparison


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


def _comparison_sql(name: str, layout: str) -> str:
    """SQL of a comparison column, over the comparison's row ``x`` and its texts ``tx``."""
    if name == "prompt":
        return _str(_prompt_text("tx.messages")) if layout == "text" else "tx.messages::text"
    return {
        "votes": "x.n::text",
        "comparison_id": "x.cid::text",
        "ranking_id": "'0'",
        "prompt_id": "x.prompt_id::text",
        "kind": _word("x.kind"),
        "gold_choice": _word("coalesce(x.gold, '')"),
        "split": "CASE WHEN tx.test THEN '\"test\"' ELSE '\"train\"' END",
    }[name]


def _side_sql(field: str, layout: str, side: str) -> str:
    """SQL of ``chosen<field>`` / ``rejected<field>`` when it shows completion ``side`` (a or b)."""
    text = f"tx.{side}_text"
    if field == "":
        return {
            "conversational": f"'[' || {_assistant(text)} || ']'",
            "implicit": _with_assistant("tx.messages", text),
            "text": _str(text),
            "hh": _str(_transcript("tx.messages", text)),
        }[layout]
    return {
        "_model": f"coalesce(to_json(nullif(tx.{side}_model, ''))::text, tx.{side}_base, '\"\"')",
        "_model_version_id": f"coalesce(tx.{side}_vid, 0)::text",
        "_model_version": f"coalesce(tx.{side}_vname, '\"\"')",
        "_sampling": f"coalesce(tx.{side}_sampling, '\"\"')",
    }[field]


def _row_sql(name: str, aggregated: bool) -> str:
    """SQL of a row column, over the line's decided row ``x``."""
    common = {
        "margin": "x.margin_json",
        "agreement": "x.agreement_json",
        "chosen_completion": _word("x.winner"),
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
    return {**common, **(aggregated_columns if aggregated else vote_columns)}[name]


def _side_field(name: str) -> tuple[int, str] | None:
    """(0 for chosen, 1 for rejected, the rest of the name) of a side column, else None."""
    for i, side in enumerate(_SIDES):
        if name.startswith(side) and name != "chosen_completion":
            return i, name[len(side) :]
    return None


def _key(name: str, first: bool) -> str:
    return ("{" if first else ", ") + json.dumps(name, ensure_ascii=False) + ": "


@dataclass
class LinePlan:
    """Where each piece of a line comes from: the SQL of the per-comparison values and of the row
    segments, and the order in which `Lines` joins them with the keys."""

    comparison_sql: list[str]  # one value per comparison column
    side_sql: list[str]  # for each side field: its value showing A, then showing B
    segment_sql: list[str]  # one concat() per run of row columns (with its keys)
    # Each piece of the line in order, as (kind, key text, index, chosen 0 / rejected 1): a key
    # ("key", text), a comparison value ("comparison", index), a side field's value ("side",
    # field index, which) or a row segment ("segment", index).
    pieces: list[tuple[str, str, int, int]]


def line_plan(columns: list[Column], layout: str, aggregated: bool) -> LinePlan:
    comparison_sql: list[str] = []
    side_sql: list[str] = []
    side_fields: dict[str, int] = {}
    segments: list[list[str]] = []
    pieces: list[tuple[str, str, int, int]] = []
    in_segment = False
    for i, column in enumerate(columns):
        key = _key(column.name, i == 0)
        side = _side_field(column.name)
        if column.name in _COMPARISON or side is not None:
            in_segment = False
            pieces.append(("key", key, 0, 0))
            if side is None:
                pieces.append(("comparison", "", len(comparison_sql), 0))
                comparison_sql.append(_comparison_sql(column.name, layout))
            else:
                which, field = side
                if field not in side_fields:
                    side_fields[field] = len(side_fields)
                    side_sql += [_side_sql(field, layout, "a"), _side_sql(field, layout, "b")]
                pieces.append(("side", "", side_fields[field], which))
            continue
        if not in_segment:
            pieces.append(("segment", "", len(segments), 0))
            segments.append([])
            in_segment = True
        segments[-1] += ["'" + key.replace("'", "''") + "'", _row_sql(column.name, aggregated)]
    pieces.append(("key", "}\n", 0, 0))
    # concat() builds each segment in one buffer; `||` would copy it once per piece
    segment_sql = [f"concat({', '.join(s)})" for s in segments]
    return LinePlan(comparison_sql, side_sql, segment_sql, pieces)


class _Template:
    """``text % values``, the values taken from a comparison's fields by index."""

    def __init__(self, parts: list[bytes | int]) -> None:
        self.text = b"".join(p.replace(b"%", b"%%") if isinstance(p, bytes) else b"%b" for p in parts)
        self.indices = [p for p in parts if isinstance(p, int)]

    def __call__(self, fields: list[bytes]) -> bytes:
        return self.text % tuple(map(fields.__getitem__, self.indices))


class Lines:
    """The lines of one comparison's row of the statement (see `postgres_sql.statement`)."""

    def __init__(self, plan: LinePlan) -> None:
        n = len(plan.comparison_sql)
        # For A winning, then for B: the templates of the line's runs between its row segments.
        self._runs: list[list[_Template]] = []
        for flip in (0, 1):
            runs: list[list[bytes | int]] = [[]]
            for kind, key, index, which in plan.pieces:
                if kind == "key":
                    runs[-1].append(key.encode())
                elif kind == "comparison":
                    runs[-1].append(index)
                elif kind == "side":
                    runs[-1].append(n + 2 * index + (which ^ flip))
                else:
                    runs.append([])
            self._runs.append([_Template(run) for run in runs])
        # For A winning, then for B: the whole line over the comparison's fields and then the
        # line's row segments (a comparison with a single line needs no template of its own).
        self._lines: list[_Template] = []
        width = n + len(plan.side_sql)
        for flip in (0, 1):
            parts: list[bytes | int] = []
            for kind, key, index, which in plan.pieces:
                if kind == "key":
                    parts.append(key.encode())
                elif kind == "comparison":
                    parts.append(index)
                elif kind == "side":
                    parts.append(n + 2 * index + (which ^ flip))
                else:
                    parts.append(width + index)
            self._lines.append(_Template(parts))

    def template(self, fields: list[bytes], b_wins: bool) -> bytes:
        """The lines of this comparison (``fields``) whose winner is B (or A): ``template %
        row_segments`` is the line."""
        return b"%b".join([run(fields).replace(b"%", b"%%") for run in self._runs[b_wins]])

    def line(self, fields: list[bytes], b_wins: bool) -> bytes:
        """The line whose winner is B (or A) from its comparison's fields followed by its row
        segments."""
        return self._lines[b_wins](fields)
