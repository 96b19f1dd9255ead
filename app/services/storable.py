"""What a text or a JSON value must be to be stored: no NUL, no unpaired surrogate, bounded nesting.

PostgreSQL text and JSONB cannot hold NUL; UTF-8 cannot encode a lone surrogate (which a JSON
`\\ud800` escape produces); JSON nested thousands deep exhausts a recursive parser. The web edge
(app.web.input_guard) and the importer (per line) refuse such values with these checks, naming
the field.
"""

from __future__ import annotations

import re
from typing import Any

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
MAX_JSON_DEPTH = 64


def text_problem(value: str) -> str | None:
    """Why a text cannot be stored (NUL or an unpaired surrogate), or None."""
    match = _BAD_CHARS.search(value)
    if match is None:
        return None
    return "contains a NUL character" if match.group() == "\x00" else "contains an unpaired surrogate"


def value_problem(value: Any, where: str, depth: int = 0) -> tuple[str, str] | None:
    """The first (field, reason) in a parsed JSON value that cannot be stored, or None. `where`
    names the value; nested fields are named `where.key` and `where.0`."""
    if depth > MAX_JSON_DEPTH:
        return where, f"nests deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        reason = text_problem(value)
        return (where, reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{printable(str(key))}" if where else printable(str(key))
            if (reason := text_problem(str(key))) is not None:
                return name, "name " + reason
            if (found := value_problem(item, name, depth + 1)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            name = f"{where}.{index}" if where else str(index)
            if (found := value_problem(item, name, depth + 1)) is not None:
                return found
    return None


def json_too_deep(text: str | bytes) -> bool:
    """True when brackets nest past MAX_JSON_DEPTH: checked before parsing, which would recurse."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def printable(name: str) -> str:
    """A field name fit for a message: control characters and surrogates escaped."""
    if text_problem(name) is None and name.isprintable():
        return name
    return name.encode("unicode_escape", errors="backslashreplace").decode("ascii")
