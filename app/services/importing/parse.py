"""Parsing a file into validated rows, collecting every problem before anything is written.

Every row is validated and *every* problem is collected; if there is any, `ImportFailed` is
raised listing them all, each naming its line (or record) and field. Nothing is looked up in
the database: duplicates are not problems, store.py skips them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from app.models import Choice
from app.services.content import ROLES, messages_hash
from app.services.importing.read import (
    EXTENSIONS,
    RawRow,
    Source,
    decode,
    read_csv,
    read_json,
    read_jsonl,
    read_whole,
    type_name,
)
from app.services.importing.schema import (
    FIELDS,
    IGNORED_FIELDS,
    MAX_MESSAGES,
    MAX_MODEL_NAME_CHARS,
    MAX_TEXT_CHARS,
    ImportFailed,
    ImportKind,
    ImportProblem,
    Problems,
    expected_fields,
)
from app.services.rating.ranking import MAX_RANK_K, MIN_RANK_K
from app.services.storable import MAX_JSON_DEPTH, json_too_deep, printable, text_problem, value_problem

_GOLD = {"a": Choice.A, "b": Choice.B, "tie": Choice.tie}


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
    completions: tuple[str, ...] | None = None  # rankings: the K texts, in file order
    models: tuple[str | None, ...] | None = None
    gold_ranks: tuple[int, ...] | None = None

    @property
    def location(self) -> str:
        return f"{self.where} {self.line}"


def parse_rows(
    *, kind: ImportKind | str, filename: str, data: Source, rank_k: int | None = None
) -> list[ParsedRow]:
    """Parse and validate a whole file; raise `ImportFailed` listing every problem found.

    The format is chosen by the extension of ``filename`` (.jsonl, .ndjson, .json or .csv).
    Nothing is looked up in the database: duplicates are not problems, `import_file` skips them.
    ``rank_k``: the completions a ranking must have (the project's); None: any from 3 to 9.
    """
    problems: list[ImportProblem] = []
    parsed = list(iter_rows(kind=kind, filename=filename, data=data, problems=problems, rank_k=rank_k))
    _raise_if_any(filename, problems, len(parsed))
    return parsed


def check_rows(*, kind: ImportKind | str, filename: str, data: Source, rank_k: int | None = None) -> int:
    """Validate a whole file without holding its rows; the number of rows, or `ImportFailed`
    listing every problem found."""
    problems: list[ImportProblem] = []
    rows = iter_rows(kind=kind, filename=filename, data=data, problems=problems, rank_k=rank_k)
    count = sum(1 for _ in rows)
    _raise_if_any(filename, problems, count)
    return count


def iter_rows(
    *,
    kind: ImportKind | str,
    filename: str,
    data: Source,
    problems: list[ImportProblem],
    rank_k: int | None = None,
) -> Iterator[ParsedRow]:
    """The valid rows of a file in file order, read as they are parsed (JSONL one line at a time);
    the problems of the others are appended to ``problems`` (a rejected file has no rows at all
    when its problems are read, but rows may have been yielded before them)."""
    kind = ImportKind(kind)
    fmt = EXTENSIONS.get(PurePath(filename).suffix.lower())
    if fmt is None:
        accepted = ", ".join(EXTENSIONS)
        suffix = PurePath(filename).suffix or "(none)"
        raise ImportFailed(
            filename,
            [ImportProblem(0, None, f"unsupported file type {suffix}; use one of {accepted}")],
        )
    raw_rows: Iterable[RawRow]
    if fmt == "jsonl":
        raw_rows = read_jsonl(filename, data, problems)  # validated as they are read
    else:
        text = decode(filename, read_whole(data))
        raw_rows, found = read_json(text) if fmt == "json" else read_csv(kind, text)
        del text
        problems += found
    for raw in raw_rows:
        row, row_problems = _validate(kind, raw, rank_k)
        if row is not None:
            yield row
        else:
            problems += row_problems


def _raise_if_any(filename: str, problems: list[ImportProblem], count: int) -> None:
    if not count and not problems:
        problems.append(ImportProblem(0, None, "no rows: the file holds no records"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ImportFailed(filename, problems)


def _validate(
    kind: ImportKind, raw: RawRow, rank_k: int | None = None
) -> tuple[ParsedRow | None, list[ImportProblem]]:
    problems = Problems(raw.line, raw.where)
    values = raw.values
    if unstorable(values, problems):
        return None, problems.items
    if not raw.from_csv:  # CSV columns were checked once, in the header
        for name in values:
            if name not in FIELDS[kind] and name not in IGNORED_FIELDS[kind]:
                problems.add(name, f"unknown field; {expected_fields(kind)}")

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
    elif kind == ImportKind.rankings:
        row.update(_ranking(values, problems, rank_k))
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


def unstorable(values: dict[str, Any], problems: Problems) -> bool:
    """Add a problem for each field holding what cannot be stored (NUL, an unpaired surrogate,
    JSON nested too deep, also inside a JSON-encoded string); True when there was any."""
    before = len(problems.items)
    for name, value in values.items():
        field = printable(str(name))
        found = value_problem(value, field)
        if found is None and isinstance(value, str) and json_too_deep(value):
            found = field, f"JSON nests deeper than {MAX_JSON_DEPTH} levels"
        if found is None and (reason := text_problem(str(name))) is not None:
            found = field, "name " + reason
        if found is not None:
            where, reason = found
            problems.add(field, reason if where == field else f"{where[len(field) + 1 :]} {reason}")
    return len(problems.items) > before


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _prompt_messages(
    kind: ImportKind, values: dict[str, Any], problems: Problems
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


def _check_ends_with_user(messages: list[dict[str, str]], problems: Problems, *, demo: bool = False) -> bool:
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


def _messages(value: Any, problems: Problems) -> list[dict[str, str]] | None:
    name = "messages"
    if isinstance(value, str):  # JSON-encoded (always so in CSV)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            problems.add(name, f"must be a JSON list of messages; invalid JSON: {error.msg}")
            return None
    if not isinstance(value, list):
        problems.add(name, f"must be a list of {{role, content}} messages, got {type_name(value)}")
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
                f"message {number} must be an object with 'role' and 'content', got {type_name(message)}",
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


def _required_text(values: dict[str, Any], name: str, problems: Problems) -> str | None:
    value = values.get(name)
    if value is None:
        problems.add(name, "is required (a non-empty string)")
        return None
    if not isinstance(value, str) or not value.strip():
        got = "" if isinstance(value, str) else f", got {type_name(value)}"
        problems.add(name, f"must be a non-empty string{got}")
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.add(name, _too_long(value))
        return None
    return value


def _optional_name(values: dict[str, Any], name: str, problems: Problems) -> str | None:
    value = values.get(name)
    if not _present(value):
        return None
    if not isinstance(value, str):
        problems.add(name, f"must be a string, got {type_name(value)}")
        return None
    value = value.strip()
    if len(value) > MAX_MODEL_NAME_CHARS:
        problems.add(name, f"is {len(value):,} characters long; the limit is {MAX_MODEL_NAME_CHARS}")
        return None
    return value


def _optional_object(values: dict[str, Any], name: str, problems: Problems) -> dict[str, Any] | None:
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
        problems.add(name, f"must be a JSON object, got {type_name(value)}")
        return None
    return value


def _gold(values: dict[str, Any], problems: Problems) -> Choice | None:
    value = values.get("gold")
    if not _present(value):
        return None
    choice = _GOLD.get(value.strip().lower()) if isinstance(value, str) else None
    if choice is None:
        problems.add("gold", f"must be A, B or tie, got {value!r}")
    return choice


def _json_list(values: dict[str, Any], name: str, problems: Problems) -> list[Any] | None:
    """A list field (JSON-encoded in CSV); None when absent or (with a problem) not a list."""
    value = values.get(name)
    if not _present(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            problems.add(name, f"must be a JSON list; invalid JSON: {error.msg}")
            return None
    if not isinstance(value, list):
        problems.add(name, f"must be a list, got {type_name(value)}")
        return None
    return value


def _ranking(values: dict[str, Any], problems: Problems, rank_k: int | None) -> dict[str, Any]:
    """The completions of a ranking row, their models and gold ranks (problems added)."""
    name = "completions"
    texts = _json_list(values, name, problems)
    if texts is None:
        if not _present(values.get(name)):
            problems.add(name, "is required (a list of the completions to rank)")
        return {}
    size = len(texts)
    if rank_k is not None and size != rank_k:
        problems.add(name, f"has {size} completions; this project ranks {rank_k} at a time (its rank_k)")
    elif not MIN_RANK_K <= size <= MAX_RANK_K:
        problems.add(name, f"has {size} completions; a ranking has {MIN_RANK_K} to {MAX_RANK_K}")
    checked: list[str] = []
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str) or not text.strip():
            problems.add(name, f"completion {number} must be a non-empty string")
        elif len(text) > MAX_TEXT_CHARS:
            problems.add(name, f"completion {number} {_too_long(text)}")
        elif text in checked:
            problems.add(name, f"completion {number} repeats completion {checked.index(text) + 1}")
            checked.append(text)
        else:
            checked.append(text)
    row: dict[str, Any] = {"completions": tuple(checked)}
    models = _json_list(values, "models", problems)
    if models is not None:
        if len(models) != size:
            problems.add("models", f"has {len(models)} names for {size} completions (null where unknown)")
        names: list[str | None] = []
        for number, model in enumerate(models, start=1):
            if model is None or (isinstance(model, str) and not model.strip()):
                names.append(None)
            elif not isinstance(model, str) or len(model.strip()) > MAX_MODEL_NAME_CHARS:
                problems.add(
                    "models", f"model {number} must be a name of at most {MAX_MODEL_NAME_CHARS} characters"
                )
            else:
                names.append(model.strip())
        row["models"] = tuple(names)
    gold = _json_list(values, "gold_ranks", problems)
    if gold is not None:
        if len(gold) != size:
            problems.add("gold_ranks", f"has {len(gold)} ranks for {size} completions")
        elif any(
            not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= size for rank in gold
        ):
            problems.add("gold_ranks", f"each rank is a whole number from 1 (best) to {size}")
        elif set(gold) != set(range(1, max(gold) + 1)):
            problems.add("gold_ranks", "ranks run 1, 2, 3 ... without gaps; equal ranks are ties")
        elif len(set(gold)) == 1:
            problems.add("gold_ranks", "all tied: a gold ranking needs a known order")
        else:
            row["gold_ranks"] = tuple(gold)
    return row


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _too_long(text: str) -> str:
    return f"is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}"
