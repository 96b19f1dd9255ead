"""What a written answer must be, and how it compares with other texts: normalised similarity
(the lazy-writer checks), the character edit distance and the unified diff of an improvement.

* An answer is refused, before anything is stored, when it is empty or only whitespace, holds a
  NUL character, or is longer than the project's `max_answer_chars`.
* Lazy-writer flags, set when the answer is stored and shown to its reviewers:
  ``copies_completion`` - a "write" answer whose normalised text is at least `SIMILAR` similar to
  a model completion of the same prompt; ``unchanged`` - an "improve" answer whose normalised
  text equals the completion it started from; ``duplicate`` - an answer at least `SIMILAR`
  similar to another rater's demonstration of the same prompt.
* Normalised: case folded, runs of whitespace collapsed, ends stripped. Similarity is difflib's
  ratio on the normalised texts (1.0 = identical).
* The edit distance is the character Levenshtein distance when the two texts are small enough
  (len(a) * len(b) <= `EXACT_CELLS`); beyond, the sum over difflib's changed blocks of the longer
  side, an upper bound that equals it for a single block of changes.
"""

from __future__ import annotations

import difflib
import re

from app.services.rating.common import InvalidJudgment

SIMILAR = 0.95
EXACT_CELLS = 2_000_000
_SPACE = re.compile(r"\s+")


def check_answer(text: str, *, max_chars: int) -> str:
    """The answer as stored (line ends normalised), or InvalidJudgment naming the problem."""
    if "\x00" in text:
        raise InvalidJudgment("answer", "contains a NUL character; remove it and submit again")
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise InvalidJudgment("answer", "is empty; write the response before submitting")
    if len(text) > max_chars:
        raise InvalidJudgment(
            "answer", f"is {len(text):,} characters long; this project takes at most {max_chars:,}"
        )
    return text


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.casefold()).strip()


def similarity(a: str, b: str) -> float:
    a, b = normalise(a), normalise(b)
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def edit_distance(a: str, b: str) -> int:
    if len(a) * len(b) > EXACT_CELLS:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def unified_diff(original: str, edited: str) -> str:
    lines = difflib.unified_diff(
        original.splitlines(keepends=True), edited.splitlines(keepends=True),
        fromfile="original", tofile="edited",
    )  # fmt: skip
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def lazy_flags(
    answer: str, *, kind: str, start: str | None, completions: list[str], others: list[str]
) -> list[str]:
    """The lazy-writer flags of an answer (see the module's docstring)."""
    flags: list[str] = []
    if kind == "write" and any(similarity(answer, text) >= SIMILAR for text in completions):
        flags.append("copies_completion")
    if kind == "improve" and start is not None and normalise(answer) == normalise(start):
        flags.append("unchanged")
    if any(similarity(answer, text) >= SIMILAR for text in others):
        flags.append("duplicate")
    return flags
