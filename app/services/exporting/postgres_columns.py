"""Parquet from PostgreSQL without JSON: the statement's values read by Arrow's CSV reader.

For a per-rater Parquet export in the conversational or text layout (`columnar_sql`), the
statement (over the same decided rows as postgres_sql.py) writes one CSV row per line with plain
values, not JSON: the line's own values (winner, agreement, margin, judgment, rater, …) on every
row, and the values its comparison's lines share (prompt, both completions' texts and provenance,
split, ids) only on the comparison's first line, so that each text is read and sent once. The
last row holds the card's figures (`Summary`) in a column of its own.

`ColumnReader` reads the COPY output, in blocks of whole rows, with Arrow's CSV reader with an
explicit type per value, carries each comparison's values forward to its other lines, and builds
each Parquet column as an Arrow array: ``chosen_*`` / ``rejected_*`` take A's or B's value by the
line's winner, messages are built from their contents and roles sent end to end with their byte
lengths (fixed-width digits), time stamps from their microseconds. No Python object is made per
line beyond the card's figures. The batches are those of the JSON-lines path (``WRITE_BATCH``
lines in row order), so the Parquet row groups and bytes are the same
(tests/services/test_export_postgres.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.services.exporting.columns import Column
from app.services.exporting.postgres_sql import TEXTS, decided

WIDTH = 10  # digits of each byte length in a message list's lengths
BLOCK_SIZE = 1 << 20  # bytes of CSV parsed at a time

# (name, Arrow type) of the statement's values, in its column order; ``shared`` ones are set on a
# comparison's first line only.
_SHARED = [
    ("split", "str"), ("a_chars", "int"), ("b_chars", "int"), ("a_vid", "int"), ("b_vid", "int"),
    ("votes", "int"), ("comparison_id", "int"), ("prompt_id", "int"), ("kind", "str"),
    ("gold_choice", "str"), ("prompt_text", "str"), ("contents", "str"), ("content_lengths", "str"),
    ("roles", "str"), ("role_lengths", "str"),
    ("a_text", "str"), ("b_text", "str"), ("a_model", "str"), ("b_model", "str"),
    ("a_vname", "str"), ("b_vname", "str"), ("a_sampling", "str"), ("b_sampling", "str"),
]  # fmt: skip
_OWN = [
    ("winner", "str"), ("agreement", "float"), ("margin", "float"), ("judgment_id", "int"),
    ("rater", "str"), ("source", "str"), ("strength", "int"), ("both_bad", "bool"), ("flags", "str"),
    ("rationale", "str"), ("time_spent_ms", "int"), ("a_on_left", "bool"), ("created_at", "int"),
    ("summary", "str"),
]  # fmt: skip
_SIDES = {"chosen_model": "model", "chosen_model_version_id": "vid", "chosen_model_version": "vname",
          "chosen_sampling": "sampling"}  # fmt: skip


def _lengths(value: str) -> str:
    """SQL: the byte lengths of ``value`` over a messages array's elements, each in WIDTH digits."""
    return f"coalesce(string_agg(lpad(octet_length({value})::text, {WIDTH}, '0'), '' ORDER BY i), '')"


def _messages(messages: str) -> str:
    """SQL: the contents and roles of a messages array, each end to end, and their byte lengths."""
    source = f"FROM jsonb_array_elements({messages}) WITH ORDINALITY AS t(m, i)"
    return ", ".join(
        f"(SELECT {sql} {source})"
        for sql in (
            "coalesce(string_agg(m->>'content', '' ORDER BY i), '')",
            _lengths("m->>'content'"),
            "coalesce(string_agg(m->>'role', '' ORDER BY i), '')",
            _lengths("m->>'role'"),
        )
    )


_SELECT = """
(SELECT s.*, x.winner, x.agreement_json, x.margin_json, x.jid, x.rater_name, x.source, x.strength,
        x.both_bad, CASE WHEN x.flags = '[]'::jsonb THEN '' ELSE
            array_to_string(ARRAY(SELECT jsonb_array_elements_text(x.flags)), ',') END,
        x.rationale, x.time_spent_ms, x.a_on_left,
        (extract(epoch FROM x.created_at) * 1000000)::bigint, NULL::text
FROM (
  SELECT x.*, lag(x.cid) OVER (ORDER BY x.cid, x.jid) IS DISTINCT FROM x.cid AS first
  FROM decided x
  WHERE x.agreement_json::float8 >= %(x_min_agreement)s::float8
) x
LEFT JOIN LATERAL (
  SELECT CASE WHEN tx.test THEN 'test' ELSE 'train' END, char_length(tx.a_text), char_length(tx.b_text),
         coalesce(tx.a_vid, 0), coalesce(tx.b_vid, 0), x.n, x.cid, x.prompt_id, x.kind::text,
         coalesce(x.gold::text, ''), {prompt_text}, {messages}, tx.a_text, tx.b_text,
         coalesce(nullif(tx.a_model, ''), tx.a_base_text, ''),
         coalesce(nullif(tx.b_model, ''), tx.b_base_text, ''),
         coalesce(tx.a_vname_text, ''), coalesce(tx.b_vname_text, ''),
         coalesce(tx.a_sampling_text, ''), coalesce(tx.b_sampling_text, '')
  FROM ({texts} AND x.first OFFSET 0) tx
) s ON true
ORDER BY x.cid, x.jid)
UNION ALL
SELECT {nulls}{summary}"""


def columnar_sql(judgments: str, columns: list[Column], layout: str, aggregated: bool) -> str | None:
    """The statement of a Parquet export read by `ColumnReader`, or None where its columns need
    the JSON lines (other layouts, aggregated rows)."""
    from app.services.exporting.postgres_lines import _prompt_text

    if aggregated or layout not in ("conversational", "text"):
        return None
    known = {"prompt", "chosen", "rejected", "ranking_id", "chosen_completion", "split"}
    known |= (
        {name for name, _ in _SHARED + _OWN} | set(_SIDES) | {k.replace("chosen", "rejected") for k in _SIDES}
    )
    if any(column.name not in known for column in columns):
        return None
    head, summary = decided(judgments, aggregated)
    text = _prompt_text("tx.messages") if layout == "text" else "''"
    messages = _messages("tx.messages") if layout == "conversational" else "'', '', '', ''"
    nulls = "NULL, " * (len(_SHARED) + len(_OWN) - 1)
    select = _SELECT.format(
        prompt_text=text, messages=messages, texts=TEXTS, nulls=nulls, summary="{summary}"
    )
    return head + select.replace("{summary}", summary)


def _blocks(copy: Any) -> Iterator[bytes]:
    """The COPY's output in blocks of whole rows (PostgreSQL sends one message per row) of about
    ``BLOCK_SIZE`` bytes, so that no row straddles two of Arrow's blocks however long it is."""
    parts: list[bytes] = []
    size = 0
    for data in copy:
        parts.append(bytes(data))
        size += len(data)
        if size >= BLOCK_SIZE:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


@dataclass
class ColumnBatch:
    """``WRITE_BATCH`` lines as an Arrow table in the writer's schema, and each line's split."""

    table: Any
    splits: Any

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def select(self, splits: tuple[str, ...]) -> list[Any]:
        """The table of the lines in ``splits`` (in a list, empty where none)."""
        import pyarrow.compute as pc

        mask = pc.is_in(self.splits, value_set=self._pa().array(splits))
        kept = pc.sum(mask).as_py() or 0
        if kept == 0:
            return []
        return [self.table if kept == len(self) else self.table.filter(mask)]

    @staticmethod
    def _pa() -> Any:
        import pyarrow as pa

        return pa


def _types(pa: Any) -> dict[str, Any]:
    kinds = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    return {name: kinds[kind] for name, kind in _SHARED + _OWN}


class ColumnReader:
    """Reads the rows of `columnar_sql` from a COPY (CSV) into batches of Arrow columns."""

    def __init__(self, columns: list[Column], schema: Any, batch: int) -> None:
        import pyarrow as pa

        self._pa = pa
        self.columns = columns
        self.schema = schema
        self.batch = batch
        self.summary: list[Any] | None = None

    def batches(self, copy: Any) -> Iterator[tuple[Any, ColumnBatch]]:
        """(the raw columns, the writer's table) per batch of ``batch`` lines, in row order."""
        import pyarrow.csv as pcsv

        pa = self._pa
        types = _types(pa)
        names = [name for name, _ in _SHARED + _OWN]
        parse = pcsv.ParseOptions(newlines_in_values=True)
        convert = pcsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"],
        )  # fmt: skip
        carry: Any = None  # the last line's shared values, for the next block's first lines
        pending: list[Any] = []
        rows = 0
        for data in _blocks(copy):
            read = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1)
            table = pcsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse,
                                  convert_options=convert)  # fmt: skip
            summary = table.column("summary")
            if summary.null_count < table.num_rows:
                last = table.num_rows - 1
                self.summary = json.loads(summary[last].as_py())
                table = table.slice(0, last)
            table = self._carry(table, carry)
            if table.num_rows == 0:
                continue
            carry = table.slice(table.num_rows - 1)
            pending.append(table)
            rows += table.num_rows
            while rows >= self.batch:
                whole = pa.concat_tables(pending)
                yield self._build(whole.slice(0, self.batch))
                pending, rows = [whole.slice(self.batch)], rows - self.batch
        if rows:
            yield self._build(pa.concat_tables(pending))

    def _carry(self, table: Any, carry: Any) -> Any:
        """``table`` with each line's shared values: those of its comparison's first line."""
        import pyarrow.compute as pc

        pa = self._pa
        arrays = []
        for name, _ in _SHARED:
            column = table.column(name)
            if carry is not None:
                column = pa.chunked_array(carry.column(name).chunks + column.chunks, column.type)
            filled = pc.fill_null_forward(column.combine_chunks())
            arrays.append(filled.slice(1) if carry is not None else filled)
        return pa.table(
            arrays + [table.column(name) for name, _ in _OWN], names=[n for n, _ in _SHARED + _OWN]
        )

    def _build(self, raw: Any) -> tuple[Any, ColumnBatch]:
        import pyarrow.compute as pc

        pa = self._pa
        raw = raw.combine_chunks()
        n = raw.num_rows
        a_wins = pc.equal(raw.column("winner"), "A").combine_chunks()

        def col(name: str) -> Any:
            return (
                raw.column(name).chunk(0) if raw.column(name).num_chunks else pa.array([], _types(pa)[name])
            )

        def side(field: str, chosen: bool) -> Any:
            a, b = col(f"a_{field}"), col(f"b_{field}")
            return pc.if_else(a_wins, a, b) if chosen else pc.if_else(a_wins, b, a)

        arrays = []
        for column, type_ in zip(self.columns, self.schema.types, strict=True):
            name = column.name
            if name == "prompt" and pa.types.is_string(type_):
                value = col("prompt_text")
            elif name == "prompt":
                value = self._messages(
                    col("contents"), col("content_lengths"), col("roles"), col("role_lengths")
                )
            elif name in ("chosen", "rejected"):
                text = side("text", name == "chosen")
                value = text if pa.types.is_string(type_) else self._assistant(text)
            elif name in _SIDES or name.replace("rejected", "chosen") in _SIDES:
                value = side(_SIDES[name.replace("rejected", "chosen")], name.startswith("chosen"))
            elif name == "ranking_id":
                value = pa.array([0] * n, pa.int64())
            elif name == "chosen_completion":
                value = col("winner")
            elif name == "created_at":
                value = col("created_at").cast(type_)
            else:
                value = col(name)
            arrays.append(value)
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        return raw, ColumnBatch(table, col("split"))

    def _assistant(self, texts: Any) -> Any:
        """``[{"role": "assistant", "content": text}]`` of each text."""
        pa, n = self._pa, len(texts)
        roles = pa.array(["assistant"] * n, pa.string())
        offsets = pa.array(range(n + 1), pa.int32())
        return pa.ListArray.from_arrays(
            offsets, pa.StructArray.from_arrays([roles, texts], ["role", "content"])
        )

    def _messages(self, contents: Any, content_lengths: Any, roles: Any, role_lengths: Any) -> Any:
        """The messages of each line, from its contents and roles end to end and their lengths."""
        pa = self._pa
        counts, content = _split(pa, contents, content_lengths)
        _, role = _split(pa, roles, role_lengths)
        offsets = pa.array(_cumulative(counts), pa.int32())
        return pa.ListArray.from_arrays(
            offsets, pa.StructArray.from_arrays([role, content], ["role", "content"])
        )


def _cumulative(counts: Any) -> Any:
    import numpy as np

    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _split(pa: Any, joined: Any, lengths: Any) -> tuple[Any, Any]:
    """(the number of elements of each row, the elements as one string array) of strings sent end
    to end (``joined``) with their byte lengths in WIDTH digits (``lengths``)."""
    import numpy as np

    n = len(lengths)
    length_offsets = np.frombuffer(lengths.buffers()[1], np.int32)[lengths.offset : lengths.offset + n + 1]
    digits = np.frombuffer(lengths.buffers()[2] or b"", np.uint8)[length_offsets[0] : length_offsets[-1]]
    sizes = (digits.reshape(-1, WIDTH).astype(np.int64) - 48) @ (10 ** np.arange(WIDTH - 1, -1, -1))
    counts = np.diff(length_offsets) // WIDTH
    offsets = np.frombuffer(joined.buffers()[1], np.int32)[joined.offset : joined.offset + len(joined) + 1]
    starts = offsets[0] + _cumulative(sizes)
    data = joined.buffers()[2] or pa.py_buffer(b"")
    elements = pa.StringArray.from_buffers(len(sizes), pa.py_buffer(starts.astype(np.int32).tobytes()), data)
    return counts, elements
