"""What an import speaks of: the kinds of file, their fields and limits, and its outcome.

Row formats (``prompt`` is shorthand for ``messages: [{"role": "user", "content": prompt}]``;
exactly one of the two is given; ``id`` and ``metadata`` are tolerated and ignored):

* prompts: ``prompt`` | ``messages`` (ending with a user message).
* pairs: as prompts, plus ``completion_a``, ``completion_b`` (distinct), optional ``model_a``,
  ``model_b`` (names of the producing models), ``sampling_a``, ``sampling_b`` (JSON objects),
  ``gold`` (A, B or tie: a gold pair with a known answer); ``adversarial`` is ignored.
* demos: as prompts, plus ``response``; or a ``messages`` list ending with an assistant message
  (without ``response``), whose last message is then the response.
* rankings: as prompts, plus ``completions`` (a list of the project's ``rank_k`` distinct texts,
  3 to 9), optional ``models`` (the producing model of each, a list as long, null where unknown)
  and ``gold_ranks`` (the known rank of each, 1 = best, equal = tie: a gold ranking).

A problem names the physical line of the file (for CSV the header is line 1, and a record with
quoted multi-line fields is named by the line it starts on; for a ``.json`` array it names the
record, 1-based) and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_TEXT_CHARS = 100_000
MAX_MESSAGES = 100
MAX_MODEL_NAME_CHARS = 200  # Completion.model_name is String(200)
MAX_LISTED_PROBLEMS = 20  # in the message of ImportFailed; all of them stay in .problems


class ImportKind(StrEnum):
    """What a file holds."""

    prompts = "prompts"
    pairs = "pairs"
    demos = "demos"
    rankings = "rankings"


PROMPT_FIELDS = ("prompt", "messages")
FIELDS: dict[ImportKind, tuple[str, ...]] = {
    ImportKind.prompts: PROMPT_FIELDS,
    ImportKind.pairs: (
        *PROMPT_FIELDS,
        "completion_a",
        "completion_b",
        "model_a",
        "model_b",
        "sampling_a",
        "sampling_b",
        "gold",
    ),
    ImportKind.demos: (*PROMPT_FIELDS, "response"),
    ImportKind.rankings: (*PROMPT_FIELDS, "completions", "models", "gold_ranks"),
}
IGNORED_FIELDS: dict[ImportKind, frozenset[str]] = {
    ImportKind.prompts: frozenset({"id", "metadata"}),
    ImportKind.pairs: frozenset({"id", "metadata", "adversarial"}),
    ImportKind.demos: frozenset({"id", "metadata"}),
    ImportKind.rankings: frozenset({"id", "metadata"}),
}


def expected_fields(kind: ImportKind) -> str:
    return f"a {kind} file has the fields {', '.join(FIELDS[kind])}"


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

    ``created`` counts the rows of the kind imported (prompts, comparisons, demonstrations or
    rankings);
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
        noun = {"prompts": "prompts", "pairs": "pairs", "demos": "demonstrations", "rankings": "rankings"}[
            self.kind
        ]
        text = f"{self.filename}: {self.rows} rows, {self.created} {noun} created"
        if self.kind != ImportKind.prompts and self.created_prompts:
            text += f" ({self.created_prompts} new prompts)"
        if self.duplicates:
            text += f", {len(self.duplicates)} duplicates skipped"
        return text


class Problems:
    """Collects problems for one row (or the file as a whole)."""

    def __init__(self, line: int = 0, where: str = "line") -> None:
        self.line = line
        self.where = where
        self.items: list[ImportProblem] = []

    def add(self, field_name: str | None, message: str) -> None:
        self.items.append(ImportProblem(self.line, field_name, message, self.where))
