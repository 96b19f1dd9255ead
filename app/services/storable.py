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
    return too_deep_under(text) is not None


def too_deep_under(text: str | bytes) -> str | None:
    """Where brackets first nest past MAX_JSON_DEPTH, without parsing: the key of the top-level
    object's member that holds the nesting ("" when the top level is not an object, or the
    nesting comes before any key); None when nothing nests that deep."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return None
    depth = 0
    in_string = escaped = False
    start = 0
    key = b""  # the last string closed directly inside the top-level object: a member's key
    for index, byte in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
                if depth == 1:
                    key = data[start:index]
        elif byte == 0x22:
            in_string = True
            start = index + 1
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                if not data.lstrip().startswith(b"{"):
                    return ""
                return printable(key.decode("utf-8", "replace"))
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return None


def printable(name: str) -> str:
    """A field name fit for a message: control characters and surrogates escaped."""
    if text_problem(name) is None and name.isprintable():
        return name
    return name.encode("unicode_escape", errors="backslashreplace").decode("ascii")
