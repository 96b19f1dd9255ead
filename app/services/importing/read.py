"""Reading a file into raw rows: UTF-8 text, then JSONL lines, a JSON array or CSV records.

The format is chosen by the file's extension: ``.jsonl``/``.ndjson`` (one JSON object per line,
blank lines ignored), ``.json`` (an array of objects) or ``.csv`` (a header row, then one record
per row; structured fields such as ``messages`` or ``sampling_a`` are JSON-encoded strings).
Nothing is validated beyond the file's own syntax and, for CSV, its header (parse.py does the rest).
JSONL is read line by line (no line over MAX_LINE_BYTES is held); .json and .csv whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from app.services.importing.schema import (
    FIELDS,
    IGNORED_FIELDS,
    MAX_MESSAGES,
    MAX_TEXT_CHARS,
    PROMPT_FIELDS,
    ImportFailed,
    ImportKind,
    ImportProblem,
    Problems,
    expected_fields,
)
from app.services.storable import MAX_JSON_DEPTH, json_too_deep, too_deep_under

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
# Large enough for a JSON-encoded conversation of MAX_MESSAGES messages of MAX_TEXT_CHARS each.
_CSV_FIELD_LIMIT = 4 * MAX_MESSAGES * MAX_TEXT_CHARS
# The longest JSONL line read: a row of two such conversations (pairs and demonstrations).
MAX_LINE_BYTES = 2 * _CSV_FIELD_LIMIT
# A file's content: bytes, or a binary file object read from its start (a JSONL file one line
# at a time, so a large file is never held whole).
Source = bytes | IO[bytes]


@dataclass
class RawRow:
    line: int
    values: dict[str, Any]
    where: str = "line"
    from_csv: bool = False


def read_whole(source: Source) -> bytes:
    """All of a file (for .json and .csv, which are parsed as a whole; the upload limit bounds
    them)."""
    if isinstance(source, bytes):
        return source
    source.seek(0)
    return source.read()


def _not_utf8(number: int, chunk: bytes, error: UnicodeDecodeError) -> ImportProblem:
    return ImportProblem(
        number,
        None,
        f"not valid UTF-8 (byte 0x{chunk[error.start]:02x} at column {error.start + 1}); "
        "save the file as UTF-8",
    )


def decode(filename: str, data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    problems = []
    for number, chunk in enumerate(data.split(b"\n"), start=1):
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(_not_utf8(number, chunk, error))
    raise ImportFailed(filename, problems)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """The file's lines, numbered from 1, without their "\n"; None for a line longer than
    MAX_LINE_BYTES, which is skipped in pieces and never held whole."""
    number = 0
    while line := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, line.removesuffix(b"\n")


def read_jsonl(filename: str, source: Source, found: list[ImportProblem]) -> Iterator[RawRow]:
    """The rows of a JSONL file, read one line at a time; problems are appended to ``found``.
    When a line is not UTF-8, `ImportFailed` lists the lines that are not, once all were read."""
    problems = Problems()
    not_utf8: list[ImportProblem] = []
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    for number, raw in _lines(stream):
        problems.line = number
        if raw is None:
            problems.add(None, f"longer than {MAX_LINE_BYTES // (1024 * 1024)} MB; the line was not read")
            continue
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            not_utf8.append(_not_utf8(number, raw, error))
            continue
        # Lines end at "\n" alone: str.splitlines() would also split on characters such as
        # U+2028, which JSON allows unescaped inside strings.
        if not line.strip():
            continue
        deep = too_deep_under(line)
        if deep is not None:
            problems.add(deep or None, f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            hint = " (a JSON array? name the file .json)" if line.lstrip().startswith("[") else ""
            problems.add(None, f"invalid JSON: {error.msg} at column {error.colno}{hint}")
            continue
        if not isinstance(value, dict):
            hint = " (a JSON array? name the file .json)" if isinstance(value, list) else ""
            problems.add(None, f"must be a JSON object, got {type_name(value)}{hint}")
            continue
        yield RawRow(number, value)
    if not_utf8:
        raise ImportFailed(filename, not_utf8)
    found.extend(problems.items)


def read_json(text: str) -> tuple[list[RawRow], list[ImportProblem]]:
    problems = Problems()
    if not text.strip():
        return [], []
    if json_too_deep(text):
        problems.add(None, f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
        return [], problems.items
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        problems.line = error.lineno
        hint = " (one object per line? name the file .jsonl)" if error.msg == "Extra data" else ""
        problems.add(None, f"invalid JSON: {error.msg} at column {error.colno}{hint}")
        return [], problems.items
    if not isinstance(value, list):
        problems.add(None, f"a .json file must hold an array of objects, got {type_name(value)}")
        return [], problems.items
    rows: list[RawRow] = []
    problems.where = "record"
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            problems.line = number
            problems.add(None, f"must be a JSON object, got {type_name(item)}")
            continue
        rows.append(RawRow(number, item, where="record"))
    return rows, problems.items


def read_csv(kind: ImportKind, text: str) -> tuple[list[RawRow], list[ImportProblem]]:
    # Only ever raises the limit (the setting is process-wide).
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems = Problems()
    header: list[str] | None = None
    rows: list[RawRow] = []
    while True:
        start = reader.line_num + 1  # the physical line the next record starts on
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.line = start
            hint = " (is a quote left open?)" if "unexpected end of data" in str(error) else ""
            problems.add(None, f"invalid CSV: {error}{hint}; the rest was not read")
            break
        if not record or all(not cell.strip() for cell in record):
            continue  # blank line
        if header is None:
            header = [name.strip() for name in record]
            problems.line = start
            _check_header(kind, header, problems)
            if problems.items:
                return [], problems.items
            continue
        problems.line = start
        if len(record) > len(header) and any(cell.strip() for cell in record[len(header) :]):
            problems.add(None, f"has {len(record)} values but the header has {len(header)} columns")
            continue
        values: dict[str, Any] = {}
        for name, cell in zip(header, record, strict=False):
            if name:
                values[name] = cell
            elif cell.strip():
                problems.add(None, "has a value in a column without a name in the header")
        rows.append(RawRow(start, values, from_csv=True))
    return rows, problems.items


def _check_header(kind: ImportKind, header: list[str], problems: Problems) -> None:
    known = set(FIELDS[kind])
    seen: set[str] = set()
    for name in header:
        if not name:
            continue
        if name in seen:
            problems.add(name, "column appears twice in the header")
        seen.add(name)
        if name not in known and name not in IGNORED_FIELDS[kind]:
            problems.add(name, f"unknown column; {expected_fields(kind)}")
    if not seen & set(PROMPT_FIELDS):
        problems.add(None, "the header needs a 'prompt' or a 'messages' column")
    required = {
        ImportKind.prompts: [],
        ImportKind.pairs: ["completion_a", "completion_b"],
        ImportKind.demos: [] if "messages" in seen else ["response"],
        ImportKind.rankings: ["completions"],
    }[kind]
    for name in required:
        if name not in seen:
            problems.add(name, "missing column in the header")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
