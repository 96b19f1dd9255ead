"""Canonical forms and hashes of prompts and texts (de-duplication keys)."""

from __future__ import annotations

import hashlib
import json

ROLES = ("system", "user", "assistant")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def messages_hash(messages: list[dict[str, str]]) -> str:
    canonical = json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return text_hash(canonical)
