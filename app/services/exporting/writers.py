"""Batched writers of JSONL, CSV and Parquet: rows in, bytes out to any binary file object.

Each writer takes lists of row tuples in column order and writes them at once; Parquet buffers
rows into row groups. ``WRITERS`` maps an export format to its writer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from app.services.exporting.columns import Column

PARQUET_ROW_GROUP = 10_000  # rows buffered per Parquet row group (memory vs. file layout)


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {
        "messages": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "int_list": pa.list_(pa.int64()),
        "int_list_list": pa.list_(pa.list_(pa.int64())),  # the rankings export's ranks per rater
        "str_list": pa.list_(pa.string()),
        "bool_list": pa.list_(pa.bool_()),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


class Writer:
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        self.fp = fp
        self.columns = columns
        self.names = [c.name for c in columns]
        self.rows = 0

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def write_lines(self, lines: list[bytes]) -> None:
        """Rows given as the JSON lines `JsonlWriter` writes (the PostgreSQL path's)."""
        raise NotImplementedError

    def write_tables(self, tables: list[Any]) -> None:
        """Rows given as Arrow tables in the Parquet schema (the PostgreSQL path's, Parquet only)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the format (Parquet's footer); the file object stays open."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# Built once: ``json.dumps`` with keyword arguments builds a new encoder on every call.
_dumps: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, default=_json_default).encode


_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _encode_messages(messages: Any) -> str:
    """``_dumps(messages)`` for the usual ``[{"role": …, "content": …}, …]`` without the encoder."""
    parts = []
    for message in messages:
        if type(message) is not dict or tuple(message) != _ROLE_CONTENT:
            return _dumps(messages)
        role, content = message["role"], message["content"]
        if type(role) is not str or type(content) is not str:
            return _dumps(messages)
        parts.append('{"role": ' + _ENCODE_STR(role) + ', "content": ' + _ENCODE_STR(content) + "}")
    if type(messages) is not list:
        return _dumps(messages)
    return "[" + ", ".join(parts) + "]"


_ROLE_CONTENT = ("role", "content")


def _encode_bool(value: bool) -> str:
    return "true" if value is True else "false" if value is False else _dumps(value)


def _encode_timestamp(value: datetime) -> str:
    return '"' + value.astimezone(UTC).isoformat() + '"'


class JsonlWriter(Writer):
    """One JSON object per line, the bytes of ``json.dumps(row, ensure_ascii=False)``.

    Each value is encoded by its column's kind (C encoders for strings and numbers) into a
    line template; nested values (messages, lists) are encoded once per object per batch, as
    the rows of a comparison share them.
    """

    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        super().__init__(fp, columns)
        self._template = (
            "{" + ", ".join(_ENCODE_STR(n).replace("%", "%%") + ": %s" for n in self.names) + "}\n"
        )
        self._kinds = [c.kind for c in columns]

    def _encoders(self) -> list[Callable[[Any], str]]:
        cache: dict[int, str] = {}  # by id(): valid while the batch holds its objects

        def nested(value: Any) -> str:
            key = id(value)
            text = cache.get(key)
            if text is None:
                text = cache[key] = _dumps(value)
            return text

        def messages(value: Any) -> str:
            key = id(value)
            text = cache.get(key)
            if text is None:
                text = cache[key] = _encode_messages(value)
            return text

        simple: dict[str, Callable[[Any], str]] = {
            "str": _ENCODE_STR,
            "int": int.__repr__,
            "float": float.__repr__,
            "bool": _encode_bool,
            "timestamp": _encode_timestamp,
            "messages": messages,
        }
        return [simple.get(kind, nested) for kind in self._kinds]

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        encoders, template, names = self._encoders(), self._template, self.names
        lines = []
        for row in rows:
            try:
                lines.append(template % tuple([encode(v) for encode, v in zip(encoders, row, strict=True)]))
            except (TypeError, ValueError, AttributeError):  # an unusual value: the general path
                lines.append(_dumps(dict(zip(names, row, strict=True))) + "\n")
        self.fp.write("".join(lines).encode("utf-8"))
        self.rows += len(rows)

    def write_lines(self, lines: list[bytes]) -> None:
        self.fp.write(b"".join(lines))
        self.rows += len(lines)


_dumps_csv: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode


class CsvWriter(Writer):
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        super().__init__(fp, columns)
        self._buffer = io.StringIO(newline="")
        self._csv = csv.writer(self._buffer)
        self._nested = [i for i, c in enumerate(columns) if c.kind.endswith("list") or c.kind == "messages"]
        self._times = [i for i, c in enumerate(columns) if c.kind == "timestamp"]
        self._csv.writerow(self.names)
        self._flush()

    def _flush(self) -> None:
        self.fp.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if self._nested or self._times:
            fixed = []
            for row in rows:
                values = list(row)
                for i in self._nested:
                    values[i] = _dumps_csv(values[i])
                for i in self._times:
                    values[i] = values[i].astimezone(UTC).isoformat()
                fixed.append(values)
            rows = fixed  # type: ignore[assignment]
        self._csv.writerows(rows)
        self._flush()
        self.rows += len(rows)


class _Position:
    """A write-only file object that knows its position (for Parquet inside a zip entry)."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp = fp
        self.pos = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.fp.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ParquetWriter(Writer):
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(fp, columns)
        self._pa = pa
        self.schema = pa.schema([(c.name, _arrow_type(c.kind)) for c in columns])
        self._types = [f.type for f in self.schema]
        self._nested = [c.kind == "messages" or c.kind.endswith("list") for c in columns]
        self._pending: list[tuple[Any, ...]] = []
        self._pending_tables: list[Any] = []  # from write_lines
        self._pending_rows = 0
        self._writer = pq.ParquetWriter(_Position(fp), self.schema, compression="zstd")

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self._pending += rows
        if len(self._pending) >= PARQUET_ROW_GROUP:
            self._write_pending()

    def write_lines(self, lines: list[bytes]) -> None:
        """JSON lines parsed by Arrow's reader into the columns; the same row groups as `write`."""
        if lines:
            import pyarrow.json as pj

            data = b"".join(lines)
            table = pj.read_json(
                self._pa.BufferReader(data),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="error"),
            )
            self._pending_tables.append(table)
            self._pending_rows += table.num_rows
        if self._pending_rows >= PARQUET_ROW_GROUP:
            self._write_pending_tables()

    def write_tables(self, tables: list[Any]) -> None:
        """Rows given as Arrow tables in this writer's schema; the same row groups as `write`."""
        for table in tables:
            self._pending_tables.append(table)
            self._pending_rows += table.num_rows
        if self._pending_rows >= PARQUET_ROW_GROUP:
            self._write_pending_tables()

    def _write_pending_tables(self) -> None:
        if not self._pending_tables:
            return
        pa = self._pa
        table = pa.concat_tables(self._pending_tables).combine_chunks()
        arrays = [
            column.chunk(0) if column.num_chunks else pa.array([], column.type) for column in table.columns
        ]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += self._pending_rows
        self._pending_tables, self._pending_rows = [], 0
        del table, arrays
        pa.default_memory_pool().release_unused()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        pa = self._pa
        columns = list(zip(*self._pending, strict=True))
        arrays = [
            _arrow_array(pa, values, t, nested)
            for values, t, nested in zip(columns, self._types, self._nested, strict=True)
        ]
        del columns
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += len(self._pending)
        self._pending = []
        del arrays
        pa.default_memory_pool().release_unused()  # keep the peak flat across row groups

    def close(self) -> None:
        self._write_pending()
        self._write_pending_tables()
        self._writer.close()


def _arrow_array(pa: Any, values: Sequence[Any], type_: Any, nested: bool) -> Any:
    """A column array; nested values shared by several rows are converted once (then taken)."""
    if not nested:
        return pa.array(values, type=type_)
    slots: dict[int, int] = {}
    unique: list[Any] = []
    indices = []
    for value in values:
        key = id(value)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(unique)
            unique.append(value)
        indices.append(slot)
    if len(unique) == len(values):
        return pa.array(values, type=type_)
    return pa.array(unique, type=type_).take(pa.array(indices, type=pa.int32()))


WRITERS: dict[str, type[Writer]] = {"jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter}
