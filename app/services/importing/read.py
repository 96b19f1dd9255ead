"""Reading a file into raw rows: UTF-8 text, then JSONL lines, a JSON array or CSV records.

The format is chosen by the file's extension: ``.jsonl``/``.ndjson`` (one JSON object per line,
blank lines ignored), ``.json`` (an array of objects) or ``.csv`` (a header row, then one record
per row; structured fields such as ``messages`` or ``sampling_a`` are JSON-encoded strings).
Nothing is validated beyond the file's own syntax and, for CSV, its header (parse.py does the rest).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from typing import Any

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

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
# Large enough for a JSON-encoded conversation of MAX_MESSAGES messages of MAX_TEXT_CHARS each.
_CSV_FIELD_LIMIT = 4 * MAX_MESSAGES * MAX_TEXT_CHARS


@dataclass
class RawRow:
    line: int
    values: dict[str, Any]
    where: str = "line"
    from_csv: bool = False


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
            problems.append(
                ImportProblem(
                    number,
                    None,
                    f"not valid UTF-8 (byte 0x{chunk[error.start]:02x} at column "
                    f"{error.start + 1}); save the file as UTF-8",
                )
            )
    raise ImportFailed(filename, problems)


def read_jsonl(text: str) -> tuple[list[RawRow], list[ImportProblem]]:
    rows: list[RawRow] = []
    problems = Problems()
    # Split on "\n" alone: str.splitlines() would also split on characters such as U+2028,
    # which JSON allows unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        problems.line = number
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
        rows.append(RawRow(number, value))
    return rows, problems.items


def read_json(text: str) -> tuple[list[RawRow], list[ImportProblem]]:
    problems = Problems()
    if not text.strip():
        return [], []
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
