"""Importing prompts, pairs and demonstrations from JSONL, JSON and CSV files, all or nothing.

The rules:

* The format is chosen by the file's extension: ``.jsonl``/``.ndjson`` (one JSON object per line,
  blank lines ignored), ``.json`` (an array of objects) or ``.csv`` (a header row, then one record
  per row; structured fields such as ``messages`` or ``sampling_a`` are JSON-encoded strings).
* Every row is validated and *every* problem is collected; if there is any, `ImportFailed` is
  raised before anything is written. Problems name the physical line of the file (for CSV the
  header is line 1, and a record with quoted multi-line fields is named by the line it starts
  on; for a ``.json`` array they name the record, 1-based) and the field.
* Only after validation succeeds are rows written, as bulk INSERTs in the session's transaction;
  the caller commits. A rollback of the caller's transaction therefore leaves nothing behind.
* Nothing is doubled. Prompts are unique per project by `messages_hash`, and an existing prompt is
  reused by pairs and demonstrations. A pair whose prompt and two completion texts (in either
  order) already form a comparison in the project, or appeared earlier in the file, is skipped;
  completions with the same text for the same prompt are reused. Demonstrations are unique per
  (prompt, `text_hash(response)`). Skipped rows are listed in `ImportReport.duplicates`.
* Lookups are done in bulk (a few queries per file, chunked), never one query per row.

Row formats (``prompt`` is shorthand for ``messages: [{"role": "user", "content": prompt}]``;
exactly one of the two is given; ``id`` and ``metadata`` are tolerated and ignored):

* prompts: ``prompt`` | ``messages`` (ending with a user message).
* pairs: as prompts, plus ``completion_a``, ``completion_b`` (distinct), optional ``model_a``,
  ``model_b`` (names of the producing models), ``sampling_a``, ``sampling_b`` (JSON objects),
  ``gold`` (A, B or tie: a gold pair with a known answer); ``adversarial`` is ignored.
* demos: as prompts, plus ``response``; or a ``messages`` list ending with an assistant message
  (without ``response``), whose last message is then the response.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, aliased

from app.models import Base, Choice, Comparison, ComparisonKind, Completion, Demonstration, Project, Prompt
from app.services.content import ROLES, messages_hash, text_hash

MAX_TEXT_CHARS = 100_000
MAX_MESSAGES = 100
MAX_MODEL_NAME_CHARS = 200  # Completion.model_name is String(200)
MAX_LISTED_PROBLEMS = 20  # in the message of ImportFailed; all of them stay in .problems
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
# Large enough for a JSON-encoded conversation of MAX_MESSAGES messages of MAX_TEXT_CHARS each.
_CSV_FIELD_LIMIT = 4 * MAX_MESSAGES * MAX_TEXT_CHARS
_CHUNK = 500  # values per IN (...) list: well under SQLite's limit on bound parameters

_T = TypeVar("_T")


class ImportKind(StrEnum):
    """What a file holds."""

    prompts = "prompts"
    pairs = "pairs"
    demos = "demos"


_PROMPT_FIELDS = ("prompt", "messages")
_FIELDS: dict[ImportKind, tuple[str, ...]] = {
    ImportKind.prompts: _PROMPT_FIELDS,
    ImportKind.pairs: (
        *_PROMPT_FIELDS,
        "completion_a",
        "completion_b",
        "model_a",
        "model_b",
        "sampling_a",
        "sampling_b",
        "gold",
    ),
    ImportKind.demos: (*_PROMPT_FIELDS, "response"),
}
_IGNORED_FIELDS: dict[ImportKind, frozenset[str]] = {
    ImportKind.prompts: frozenset({"id", "metadata"}),
    ImportKind.pairs: frozenset({"id", "metadata", "adversarial"}),
    ImportKind.demos: frozenset({"id", "metadata"}),
}
_GOLD = {"a": Choice.A, "b": Choice.B, "tie": Choice.tie}


@dataclass(frozen=True)
class ImportProblem:
    """Something wrong with (or, in `ImportReport.duplicates`, skipped in) one row of a file.

    ``line`` is the 1-based physical line of the file, or the 1-based record number of a
    ``.json`` array when ``where`` is ``"record"``; 0 means the file as a whole.
    """

    line: int
    field: str | None
    message: str
    where: str = "line"

    def __str__(self) -> str:
        parts = []
        if self.line > 0:
            parts.append(f"{self.where} {self.line}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return f"{', '.join(parts)}: {self.message}" if parts else self.message


class ImportFailed(Exception):
    """The file was rejected; nothing was imported. ``problems`` lists every problem found."""

    def __init__(self, filename: str, problems: Sequence[ImportProblem]) -> None:
        self.filename = filename
        self.problems = list(problems)
        super().__init__(self._describe())

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the custom signature
        return (type(self), (self.filename, self.problems))

    def _describe(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.filename}: {count} {noun}; nothing was imported"]
        lines += [f"  {problem}" for problem in self.problems[:MAX_LISTED_PROBLEMS]]
        if count > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {count - MAX_LISTED_PROBLEMS} more")
        return "\n".join(lines)


@dataclass
class ImportReport:
    """The outcome of a successful import.

    ``created`` counts the rows of the kind imported (prompts, comparisons or demonstrations);
    ``created_prompts`` the prompts created along the way; ``duplicates`` the rows skipped because
    they were already in the project or earlier in the file.
    """

    kind: ImportKind
    filename: str
    rows: int
    created: int
    duplicates: list[ImportProblem] = field(default_factory=list)
    created_prompts: int = 0

    @property
    def summary(self) -> str:
        """One line for a flash message or the command line."""
        noun = {"prompts": "prompts", "pairs": "pairs", "demos": "demonstrations"}[self.kind]
        text = f"{self.filename}: {self.rows} rows, {self.created} {noun} created"
        if self.kind != ImportKind.prompts and self.created_prompts:
            text += f" ({self.created_prompts} new prompts)"
        if self.duplicates:
            text += f", {len(self.duplicates)} duplicates skipped"
        return text


@dataclass(frozen=True)
class ParsedRow:
    """One validated row of a file, ready to be written."""

    line: int
    messages: list[dict[str, str]]
    prompt_hash: str
    where: str = "line"
    completion_a: str | None = None
    completion_b: str | None = None
    model_a: str | None = None
    model_b: str | None = None
    sampling_a: dict[str, Any] | None = None
    sampling_b: dict[str, Any] | None = None
    gold: Choice | None = None
    response: str | None = None

    @property
    def location(self) -> str:
        return f"{self.where} {self.line}"


# ---------------------------------------------------------------------------------------------
# Parsing and validation


@dataclass
class _RawRow:
    line: int
    values: dict[str, Any]
    where: str = "line"
    from_csv: bool = False


class _Problems:
    """Collects problems for one row (or the file as a whole)."""

    def __init__(self, line: int = 0, where: str = "line") -> None:
        self.line = line
        self.where = where
        self.items: list[ImportProblem] = []

    def add(self, field_name: str | None, message: str) -> None:
        self.items.append(ImportProblem(self.line, field_name, message, self.where))


def parse_rows(*, kind: ImportKind | str, filename: str, data: bytes) -> list[ParsedRow]:
    """Parse and validate a whole file; raise `ImportFailed` listing every problem found.

    The format is chosen by the extension of ``filename`` (.jsonl, .ndjson, .json or .csv).
    Nothing is looked up in the database: duplicates are not problems, `import_file` skips them.
    """
    kind = ImportKind(kind)
    fmt = EXTENSIONS.get(PurePath(filename).suffix.lower())
    if fmt is None:
        accepted = ", ".join(EXTENSIONS)
        suffix = PurePath(filename).suffix or "(none)"
        raise ImportFailed(
            filename,
            [ImportProblem(0, None, f"unsupported file type {suffix}; use one of {accepted}")],
        )
    text = _decode(filename, data)
    if fmt == "jsonl":
        raw_rows, problems = _read_jsonl(text)
    elif fmt == "json":
        raw_rows, problems = _read_json(text)
    else:
        raw_rows, problems = _read_csv(kind, text)
    if not raw_rows and not problems:
        problems.append(ImportProblem(0, None, "no rows: the file holds no records"))
    parsed: list[ParsedRow] = []
    for raw in raw_rows:
        row, row_problems = _validate(kind, raw)
        problems += row_problems
        if row is not None:
            parsed.append(row)
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ImportFailed(filename, problems)
    return parsed


def _decode(filename: str, data: bytes) -> str:
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


def _read_jsonl(text: str) -> tuple[list[_RawRow], list[ImportProblem]]:
    rows: list[_RawRow] = []
    problems = _Problems()
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
            problems.add(None, f"must be a JSON object, got {_type_name(value)}{hint}")
            continue
        rows.append(_RawRow(number, value))
    return rows, problems.items


def _read_json(text: str) -> tuple[list[_RawRow], list[ImportProblem]]:
    problems = _Problems()
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
        problems.add(None, f"a .json file must hold an array of objects, got {_type_name(value)}")
        return [], problems.items
    rows: list[_RawRow] = []
    problems.where = "record"
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            problems.line = number
            problems.add(None, f"must be a JSON object, got {_type_name(item)}")
            continue
        rows.append(_RawRow(number, item, where="record"))
    return rows, problems.items


def _read_csv(kind: ImportKind, text: str) -> tuple[list[_RawRow], list[ImportProblem]]:
    # Only ever raises the limit (the setting is process-wide).
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems = _Problems()
    header: list[str] | None = None
    rows: list[_RawRow] = []
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
        rows.append(_RawRow(start, values, from_csv=True))
    return rows, problems.items


def _check_header(kind: ImportKind, header: list[str], problems: _Problems) -> None:
    known = set(_FIELDS[kind])
    seen: set[str] = set()
    for name in header:
        if not name:
            continue
        if name in seen:
            problems.add(name, "column appears twice in the header")
        seen.add(name)
        if name not in known and name not in _IGNORED_FIELDS[kind]:
            problems.add(name, f"unknown column; {_expected(kind)}")
    if not seen & set(_PROMPT_FIELDS):
        problems.add(None, "the header needs a 'prompt' or a 'messages' column")
    required = {
        ImportKind.prompts: [],
        ImportKind.pairs: ["completion_a", "completion_b"],
        ImportKind.demos: [] if "messages" in seen else ["response"],
    }[kind]
    for name in required:
        if name not in seen:
            problems.add(name, "missing column in the header")


def _expected(kind: ImportKind) -> str:
    return f"a {kind} file has the fields {', '.join(_FIELDS[kind])}"


def _validate(kind: ImportKind, raw: _RawRow) -> tuple[ParsedRow | None, list[ImportProblem]]:
    problems = _Problems(raw.line, raw.where)
    values = raw.values
    if not raw.from_csv:  # CSV columns were checked once, in the header
        for name in values:
            if name not in _FIELDS[kind] and name not in _IGNORED_FIELDS[kind]:
                problems.add(name, f"unknown field; {_expected(kind)}")

    messages = _prompt_messages(kind, values, problems)
    row: dict[str, Any] = {}
    if kind == ImportKind.pairs:
        a = _required_text(values, "completion_a", problems)
        b = _required_text(values, "completion_b", problems)
        if a is not None and b is not None and a == b:
            problems.add("completion_b", "must differ from completion_a (the texts are identical)")
        row.update(completion_a=a, completion_b=b)
        for side in ("a", "b"):
            row[f"model_{side}"] = _optional_name(values, f"model_{side}", problems)
            row[f"sampling_{side}"] = _optional_object(values, f"sampling_{side}", problems)
        row["gold"] = _gold(values, problems)
    elif kind == ImportKind.demos:
        if messages is not None and messages[-1]["role"] == "assistant":
            if _present(values.get("response")):
                problems.add(
                    "response",
                    "the messages already end with an assistant message (the response); "
                    "give one or the other",
                )
            row["response"] = messages[-1]["content"]
            messages = messages[:-1]
            _check_ends_with_user(messages, problems, demo=True)
        elif messages is not None or not _present(values.get("messages")):
            row["response"] = _required_text(values, "response", problems)
        # (invalid messages and no response: the messages may be meant to end with the
        # response, so only their own problems are reported)

    if problems.items or messages is None:
        return None, problems.items
    parsed = ParsedRow(
        line=raw.line,
        where=raw.where,
        messages=messages,
        prompt_hash=messages_hash(messages),
        **row,
    )
    return parsed, []


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _prompt_messages(
    kind: ImportKind, values: dict[str, Any], problems: _Problems
) -> list[dict[str, str]] | None:
    has_prompt, has_messages = _present(values.get("prompt")), _present(values.get("messages"))
    if has_prompt and has_messages:
        problems.add("messages", "give either 'prompt' or 'messages', not both")
        return None
    if has_prompt:
        text = _required_text(values, "prompt", problems)
        return None if text is None else [{"role": "user", "content": text}]
    if has_messages:
        messages = _messages(values["messages"], problems)
        if messages is None:
            return None
        if kind == ImportKind.demos and messages[-1]["role"] == "assistant":
            return messages  # the last message is the response: checked by the caller
        return messages if _check_ends_with_user(messages, problems) else None
    if "prompt" in values:
        problems.add("prompt", "must be a non-empty string")
    elif "messages" in values:
        problems.add("messages", "must be a non-empty list of messages")
    else:
        problems.add(None, "needs a 'prompt' or a 'messages' field")
    return None


def _check_ends_with_user(messages: list[dict[str, str]], problems: _Problems, *, demo: bool = False) -> bool:
    if not messages:
        problems.add("messages", "holds only the response: the conversation before it is missing")
        return False
    if messages[-1]["role"] != "user":
        what = "before the response " if demo else ""
        problems.add(
            "messages",
            f"must end {what}with a user message (the turn to answer), "
            f"not with {_article(messages[-1]['role'])} message",
        )
        return False
    return True


def _messages(value: Any, problems: _Problems) -> list[dict[str, str]] | None:
    name = "messages"
    if isinstance(value, str):  # JSON-encoded (always so in CSV)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            problems.add(name, f"must be a JSON list of messages; invalid JSON: {error.msg}")
            return None
    if not isinstance(value, list):
        problems.add(name, f"must be a list of {{role, content}} messages, got {_type_name(value)}")
        return None
    if not value:
        problems.add(name, "must not be empty")
        return None
    if len(value) > MAX_MESSAGES:
        problems.add(name, f"has {len(value)} messages; the limit is {MAX_MESSAGES}")
        return None
    before = len(problems.items)
    messages: list[dict[str, str]] = []
    for number, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            problems.add(
                name,
                f"message {number} must be an object with 'role' and 'content', got {_type_name(message)}",
            )
            continue
        for key in message:
            if key not in ("role", "content"):
                problems.add(name, f"message {number} has an unknown key '{key}'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.add(name, f"message {number}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            problems.add(name, f"message {number}: content must be a non-empty string")
        elif len(content) > MAX_TEXT_CHARS:
            problems.add(name, f"message {number}: content {_too_long(content)}")
        else:
            messages.append({"role": str(role), "content": content})
    return messages if len(problems.items) == before else None


def _required_text(values: dict[str, Any], name: str, problems: _Problems) -> str | None:
    value = values.get(name)
    if value is None:
        problems.add(name, "is required (a non-empty string)")
        return None
    if not isinstance(value, str) or not value.strip():
        got = "" if isinstance(value, str) else f", got {_type_name(value)}"
        problems.add(name, f"must be a non-empty string{got}")
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.add(name, _too_long(value))
        return None
    return value


def _optional_name(values: dict[str, Any], name: str, problems: _Problems) -> str | None:
    value = values.get(name)
    if not _present(value):
        return None
    if not isinstance(value, str):
        problems.add(name, f"must be a string, got {_type_name(value)}")
        return None
    value = value.strip()
    if len(value) > MAX_MODEL_NAME_CHARS:
        problems.add(name, f"is {len(value):,} characters long; the limit is {MAX_MODEL_NAME_CHARS}")
        return None
    return value


def _optional_object(values: dict[str, Any], name: str, problems: _Problems) -> dict[str, Any] | None:
    value = values.get(name)
    if not _present(value):
        return None
    if isinstance(value, str):  # JSON-encoded (always so in CSV)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            problems.add(name, f"must be a JSON object; invalid JSON: {error.msg}")
            return None
    if not isinstance(value, dict):
        problems.add(name, f"must be a JSON object, got {_type_name(value)}")
        return None
    return value


def _gold(values: dict[str, Any], problems: _Problems) -> Choice | None:
    value = values.get("gold")
    if not _present(value):
        return None
    choice = _GOLD.get(value.strip().lower()) if isinstance(value, str) else None
    if choice is None:
        problems.add("gold", f"must be A, B or tie, got {value!r}")
    return choice


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _too_long(text: str) -> str:
    return f"is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}"


def _type_name(value: Any) -> str:
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


# ---------------------------------------------------------------------------------------------
# Writing


def import_file(
    session: Session,
    *,
    project: Project,
    kind: ImportKind | str,
    filename: str,
    data: bytes,
) -> ImportReport:
    """Import a whole file into ``project``, or nothing: raise `ImportFailed` on any problem.

    Rows are validated first (every problem is collected); only then are the new rows inserted,
    in bulk, in the session's transaction. The caller commits; rolling back its transaction
    leaves nothing behind. Rows already in the project or earlier in the file are skipped and
    listed in the report's ``duplicates``. Two imports of the same new prompt racing each other
    end with an IntegrityError in one of them (prompts are unique per project).
    """
    kind = ImportKind(kind)
    rows = parse_rows(kind=kind, filename=filename, data=data)
    report = ImportReport(kind=kind, filename=filename, rows=len(rows), created=0)

    prompt_ids = _prompt_ids(session, project, {row.prompt_hash for row in rows})
    existing_prompt_ids = sorted(prompt_ids.values())
    if kind == ImportKind.prompts:
        fresh = _fresh(rows, lambda row: row.prompt_hash, lambda row: row.prompt_hash in prompt_ids, report)
    elif kind == ImportKind.pairs:
        stored_pairs = _stored_pairs(session, project, existing_prompt_ids)

        def pair_key(row: ParsedRow) -> tuple[str, str, str]:
            return _pair_key(row.prompt_hash, row.completion_a or "", row.completion_b or "")

        def pair_stored(row: ParsedRow) -> bool:
            prompt_id = prompt_ids.get(row.prompt_hash)
            key = _pair_key(prompt_id or 0, row.completion_a or "", row.completion_b or "")
            return prompt_id is not None and key in stored_pairs

        fresh = _fresh(rows, pair_key, pair_stored, report)
    else:
        stored_demos = _stored_demos(session, project, existing_prompt_ids)

        def demo_stored(row: ParsedRow) -> bool:
            prompt_id = prompt_ids.get(row.prompt_hash)
            return (prompt_id, text_hash(row.response or "")) in stored_demos

        fresh = _fresh(rows, lambda row: (row.prompt_hash, row.response), demo_stored, report)

    report.created_prompts = _create_prompts(session, project, fresh, prompt_ids)
    if kind == ImportKind.pairs:
        _create_pairs(session, project, fresh, prompt_ids, existing_prompt_ids)
    elif kind == ImportKind.demos:
        _insert(
            session,
            Demonstration,
            [
                {
                    "project_id": project.id,
                    "prompt_id": prompt_ids[row.prompt_hash],
                    "response": row.response,
                    "content_hash": text_hash(row.response or ""),
                }
                for row in fresh
            ],
        )
    report.created = len(fresh)
    return report


def _fresh(
    rows: list[ParsedRow],
    key: Callable[[ParsedRow], Hashable],
    stored: Callable[[ParsedRow], bool],
    report: ImportReport,
) -> list[ParsedRow]:
    """The rows to write: neither stored already nor (by ``key``) earlier in the file.

    The others are appended to ``report.duplicates``.
    """
    first: dict[Hashable, ParsedRow] = {}
    fresh: list[ParsedRow] = []
    for row in rows:
        row_key = key(row)
        if stored(row):
            report.duplicates.append(_duplicate(row, None))
        elif row_key in first:
            report.duplicates.append(_duplicate(row, first[row_key]))
        else:
            first[row_key] = row
            fresh.append(row)
    return fresh


def _duplicate(row: ParsedRow, earlier: ParsedRow | None) -> ImportProblem:
    message = "already in the project" if earlier is None else f"duplicate of {earlier.location}"
    return ImportProblem(row.line, None, message, row.where)


def _chunks(values: Iterable[_T], size: int = _CHUNK) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(session: Session, model: type[Base], values: list[dict[str, Any]]) -> None:
    """Bulk INSERT (executemany / multi-row VALUES), not one statement per row.

    The ORM batches consecutive rows with the same keys, so rows are grouped by their keys.
    """
    if values:
        values = sorted(values, key=lambda row: sorted(row))
        session.execute(insert(model), values)


def _prompt_ids(session: Session, project: Project, hashes: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(hashes)):
        query = select(Prompt.content_hash, Prompt.id).where(
            Prompt.project_id == project.id, Prompt.content_hash.in_(chunk)
        )
        found.update((content_hash, prompt_id) for content_hash, prompt_id in session.execute(query))
    return found


def _create_prompts(
    session: Session, project: Project, rows: list[ParsedRow], prompt_ids: dict[str, int]
) -> int:
    """Insert the prompts of ``rows`` not in ``prompt_ids`` yet, and add their ids to it."""
    new: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row.prompt_hash not in prompt_ids:
            new.setdefault(row.prompt_hash, row.messages)
    _insert(
        session,
        Prompt,
        [
            {"project_id": project.id, "messages": messages, "content_hash": content_hash}
            for content_hash, messages in new.items()
        ],
    )
    if new:
        prompt_ids.update(_prompt_ids(session, project, new))
    return len(new)


def _pair_key(prompt: str | int, text_a: str, text_b: str) -> tuple[Any, str, str]:
    low, high = sorted((text_hash(text_a), text_hash(text_b)))
    return (prompt, low, high)


def _stored_pairs(session: Session, project: Project, prompt_ids: list[int]) -> set[tuple[Any, str, str]]:
    """(prompt id, completion hashes in order) of the project's comparisons of these prompts."""
    stored: set[tuple[Any, str, str]] = set()
    comp_a, comp_b = aliased(Completion), aliased(Completion)
    for chunk in _chunks(prompt_ids):
        query = (
            select(Comparison.prompt_id, comp_a.content_hash, comp_b.content_hash)
            .join(comp_a, comp_a.id == Comparison.completion_a_id)
            .join(comp_b, comp_b.id == Comparison.completion_b_id)
            .where(Comparison.project_id == project.id, Comparison.prompt_id.in_(chunk))
        )
        for prompt_id, hash_a, hash_b in session.execute(query):
            low, high = sorted((hash_a, hash_b))
            stored.add((prompt_id, low, high))
    return stored


def _stored_demos(session: Session, project: Project, prompt_ids: list[int]) -> set[tuple[int, str]]:
    stored: set[tuple[int, str]] = set()
    for chunk in _chunks(prompt_ids):
        query = select(Demonstration.prompt_id, Demonstration.content_hash).where(
            Demonstration.project_id == project.id, Demonstration.prompt_id.in_(chunk)
        )
        stored.update((prompt_id, content_hash) for prompt_id, content_hash in session.execute(query))
    return stored


def _completion_ids(session: Session, prompt_ids: Iterable[int]) -> dict[tuple[int, str], int]:
    """(prompt id, text hash) -> id of the oldest completion with that text, for these prompts."""
    found: dict[tuple[int, str], int] = {}
    for chunk in _chunks(sorted(set(prompt_ids))):
        query = (
            select(Completion.prompt_id, Completion.content_hash, Completion.id)
            .where(Completion.prompt_id.in_(chunk))
            .order_by(Completion.id.desc())  # so that the oldest one is written last
        )
        for prompt_id, content_hash, completion_id in session.execute(query):
            found[(prompt_id, content_hash)] = completion_id
    return found


def _create_pairs(
    session: Session,
    project: Project,
    rows: list[ParsedRow],
    prompt_ids: dict[str, int],
    existing_prompt_ids: list[int],
) -> None:
    # Completions already stored for the prompts of the file are reused by text; a text that
    # comes back within the file keeps the provenance given where it first appeared.
    completion_ids = _completion_ids(session, existing_prompt_ids)
    new: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        prompt_id = prompt_ids[row.prompt_hash]
        for text, model, sampling in (
            (row.completion_a, row.model_a, row.sampling_a),
            (row.completion_b, row.model_b, row.sampling_b),
        ):
            key = (prompt_id, text_hash(text or ""))
            if key not in completion_ids and key not in new:
                new[key] = {
                    "prompt_id": prompt_id,
                    "text": text,
                    "content_hash": key[1],
                    "model_name": model,
                }
                if sampling is not None:  # left out, not None: None would store a JSON null
                    new[key]["sampling"] = sampling
    _insert(session, Completion, list(new.values()))
    if new:
        created = _completion_ids(session, {prompt_id for prompt_id, _ in new})
        completion_ids.update((key, created[key]) for key in new)

    values = []
    for row in rows:
        prompt_id = prompt_ids[row.prompt_hash]
        values.append(
            {
                "project_id": project.id,
                "prompt_id": prompt_id,
                "completion_a_id": completion_ids[(prompt_id, text_hash(row.completion_a or ""))],
                "completion_b_id": completion_ids[(prompt_id, text_hash(row.completion_b or ""))],
                "kind": ComparisonKind.gold if row.gold is not None else ComparisonKind.regular,
                "gold_choice": row.gold,
            }
        )
    _insert(session, Comparison, values)


# ---------------------------------------------------------------------------------------------
# Existing preference data: TRL prompt/chosen/rejected and Anthropic HH-RLHF transcripts
#
# Each row becomes a pair (completion A = the chosen response, B = the rejected one) and a
# judgment "A better" (strength 1, source human) by the inactive account `IMPORT_RATER`, so the
# label is exported like any other and raters can add more votes up to the project's overlap.
# Accepted rows (.jsonl, .json or .parquet):
#
# * TRL explicit prompt: ``prompt`` (string or messages), ``chosen`` and ``rejected`` (strings or
#   a list holding the assistant message);
# * TRL implicit prompt: ``chosen`` and ``rejected`` are whole conversations (message lists)
#   that share everything but the last, assistant, message;
# * HH-RLHF: ``chosen`` and ``rejected`` are ``"\n\nHuman: …\n\nAssistant: …"`` transcripts that
#   share everything but the last Assistant turn.

IMPORT_RATER = "imported-labels"
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_PREFERENCE_IGNORED = frozenset({"id", "metadata", "margin", "score_chosen", "score_rejected", "source"})


def parse_hh(text: str) -> list[dict[str, str]] | None:
    """An HH transcript as messages, or None when it is not one."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


def _preference_to_pair(values: dict[str, Any], problems: _Problems) -> dict[str, Any] | None:
    for name in values:
        if name not in ("prompt", "chosen", "rejected") and name not in _PREFERENCE_IGNORED:
            problems.add(name, "unknown field; a preference row has prompt (optional), chosen, rejected")
    chosen, rejected = values.get("chosen"), values.get("rejected")
    if chosen is None or rejected is None:
        problems.add(None, "needs 'chosen' and 'rejected'")
        return None
    prompt = values.get("prompt")
    if prompt is not None:  # explicit prompt
        answers = []
        for name, value in (("chosen", chosen), ("rejected", rejected)):
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
                value = value[0].get("content") if value[0].get("role") == "assistant" else None
            if not isinstance(value, str):
                problems.add(name, "must be a string or a list holding one assistant message")
            answers.append(value)
        if problems.items:
            return None
        key = "prompt" if isinstance(prompt, str) else "messages"
        return {key: prompt, "completion_a": answers[0], "completion_b": answers[1]}
    conversations = []
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(value, str):
            value = parse_hh(value)
            if value is None:
                problems.add(
                    name, "without a prompt, must be an HH transcript ('\\n\\nHuman: …') or messages"
                )
        elif not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            problems.add(name, "must be a conversation (a list of messages) or an HH transcript")
            value = None
        if value is not None and (not value or value[-1].get("role") != "assistant"):
            problems.add(name, "must end with an assistant message")
            value = None
        conversations.append(value)
    if problems.items or conversations[0] is None or conversations[1] is None:
        return None
    if conversations[0][:-1] != conversations[1][:-1]:
        problems.add("rejected", "chosen and rejected must share the conversation before the last message")
        return None
    return {
        "messages": conversations[0][:-1],
        "completion_a": conversations[0][-1].get("content"),
        "completion_b": conversations[1][-1].get("content"),
    }


def _import_rater(session: Session) -> int:
    from app.models import Role, User

    user_id = session.scalar(select(User.id).where(User.username == IMPORT_RATER))
    if user_id is None:
        # An unusable password hash and no active flag: the account can never log in.
        user = User(username=IMPORT_RATER, password_hash="!", role=Role.rater, is_active=False)
        session.add(user)
        session.flush()
        user_id = user.id
    return int(user_id)


def import_preferences(session: Session, *, project: Project, filename: str, data: bytes) -> ImportReport:
    """Import TRL or HH-RLHF preference rows as pairs, each with its label as a judgment.

    All or nothing, like `import_file`; rows whose pair is already in the project are skipped
    (their label is not added again).
    """
    from sqlalchemy import func, update

    from app.models import Judgment, JudgmentSource

    suffix = PurePath(filename).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(io.BytesIO(data)).to_pylist()
        except Exception as error:  # noqa: BLE001 - any unreadable file
            raise ImportFailed(filename, [ImportProblem(0, None, f"not a Parquet file: {error}")]) from None
        raw_rows = [_RawRow(number, record, where="record") for number, record in enumerate(records, 1)]
        problems: list[ImportProblem] = []
    elif EXTENSIONS.get(suffix) in ("jsonl", "json"):
        text = _decode(filename, data)
        raw_rows, problems = _read_jsonl(text) if EXTENSIONS[suffix] == "jsonl" else _read_json(text)
    else:
        raise ImportFailed(filename, [ImportProblem(0, None, "use a .jsonl, .json or .parquet file")])
    pairs: list[dict[str, Any]] = []
    for raw in raw_rows:
        row_problems = _Problems(raw.line, raw.where)
        pair = _preference_to_pair(raw.values, row_problems)
        problems += row_problems.items
        if pair is not None:
            pairs.append(pair)
    if not raw_rows and not problems:
        problems.append(ImportProblem(0, None, "no rows: the file holds no records"))
    if problems:
        raise ImportFailed(filename, sorted(problems, key=lambda p: p.line))

    before = session.scalar(select(func.coalesce(func.max(Comparison.id), 0))) or 0
    pairs_file = "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs).encode()
    report = import_file(
        session, project=project, kind=ImportKind.pairs, filename=PurePath(filename).stem + ".jsonl",
        data=pairs_file,
    )  # fmt: skip
    report.filename = filename
    new_ids = list(
        session.scalars(
            select(Comparison.id).where(Comparison.project_id == project.id, Comparison.id > before)
        )
    )
    rater_id = _import_rater(session)
    _insert(
        session,
        Judgment,
        [
            {
                "comparison_id": comparison_id,
                "rater_id": rater_id,
                "project_id": project.id,
                "choice": Choice.A,
                "strength": 1,
                "both_bad": False,
                "flags": [],
                "rationale": "",
                "time_spent_ms": 0,
                "a_on_left": True,
                "source": JudgmentSource.human,
            }
            for comparison_id in new_ids
        ],
    )
    for chunk in _chunks(new_ids):
        session.execute(update(Comparison).where(Comparison.id.in_(chunk)).values(judgment_count=1))
    return report
