"""The columns of an export: how a preference row or a demonstration becomes values.

Layouts of a comparisons row (``layout``):

* ``conversational`` (default): TRL's explicit-prompt preference format: ``prompt`` is the
  conversation (a list of ``{"role", "content"}``), ``chosen`` and ``rejected`` each a list holding
  the assistant message.
* ``implicit``: TRL's implicit-prompt format: ``chosen`` and ``rejected`` hold the whole
  conversation, ending with the assistant message; no ``prompt`` column.
* ``text``: plain strings: ``prompt`` (the user's message, or the conversation as a transcript),
  ``chosen``, ``rejected``. The layout for CSV.
* ``hh``: Anthropic HH-RLHF: ``chosen`` and ``rejected`` are ``"\\n\\nHuman: …\\n\\nAssistant: …"``
  transcripts.

Metadata columns (``metadata=True``) never hold nulls, so that every block of a JSONL file has
the same column types: a missing string is ``""`` and a missing model version id is ``0``.
Each completion's provenance: ``*_model`` (the model name given at import, else the base model
of the version that sampled it), ``*_model_version_id`` and ``*_model_version`` (its name).
``flags`` is a comma-separated string (project flags cannot hold commas); sampling settings
are JSON text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Built once: ``json.dumps`` with keyword arguments builds a new encoder on every call.
_dumps_sorted: Callable[[Any], str] = json.JSONEncoder(sort_keys=True).encode


class ExportError(ValueError):
    """The export cannot be made as asked (shown to the user as is)."""


# --- columns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # messages | str | int | float | bool | int_list | str_list | bool_list | timestamp
    get: Callable[[Any], Any]


def transcript(messages: list[dict[str, str]], response: str | None = None) -> str:
    """Anthropic HH-RLHF style: ``\\n\\nHuman: …\\n\\nAssistant: …`` (a system message reads as Human)."""
    turns = [*messages, *([] if response is None else assistant(response))]
    return "".join(
        f"\n\n{'Assistant' if m['role'] == 'assistant' else 'Human'}: {m['content']}" for m in turns
    )


def prompt_as_text(messages: list[dict[str, str]]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return transcript(messages).lstrip("\n")


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _layout_columns(layout: str) -> list[Column]:
    if layout == "conversational":
        return [
            Column("prompt", "messages", lambda r: r.messages),
            Column("chosen", "messages", lambda r: assistant(r.chosen)),
            Column("rejected", "messages", lambda r: assistant(r.rejected)),
        ]
    if layout == "implicit":
        return [
            Column("chosen", "messages", lambda r: [*r.messages, *assistant(r.chosen)]),
            Column("rejected", "messages", lambda r: [*r.messages, *assistant(r.rejected)]),
        ]
    if layout == "text":
        return [
            Column("prompt", "str", lambda r: prompt_as_text(r.messages)),
            Column("chosen", "str", lambda r: r.chosen),
            Column("rejected", "str", lambda r: r.rejected),
        ]
    if layout == "hh":
        return [
            Column("chosen", "str", lambda r: transcript(r.messages, r.chosen)),
            Column("rejected", "str", lambda r: transcript(r.messages, r.rejected)),
        ]
    raise ExportError(f"unknown layout {layout!r}")


def _sampling(side: Any) -> str:
    if side.sampling_json is None:
        side.sampling_json = _dumps_sorted(side.sampling) if side.sampling else ""
    return side.sampling_json


class Pseudonyms:
    """Stable pseudonymous rater ids: an HMAC of the user id under the server's secret key."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._cache: dict[int, str] = {}

    def __call__(self, rater_id: int) -> str:
        name = self._cache.get(rater_id)
        if name is None:
            digest = hmac.new(self._key, f"rater:{rater_id}".encode(), hashlib.sha256).hexdigest()
            name = self._cache[rater_id] = "r_" + digest[:12]
        return name


def comparison_columns(layout: str, *, aggregated: bool, metadata: bool, rater: Pseudonyms) -> list[Column]:
    columns = _layout_columns(layout)
    if not metadata:
        return [*columns, Column("margin", "float", lambda r: r.margin)]
    columns += [
        Column("margin", "float", lambda r: r.margin),
        Column("agreement", "float", lambda r: r.agreement),
        Column("votes", "int", lambda r: r.votes),
        Column("comparison_id", "int", lambda r: r.comparison_id),
        Column("ranking_id", "int", lambda r: r.ranking_id or 0),
        Column("prompt_id", "int", lambda r: r.prompt_id),
        Column("kind", "str", lambda r: r.kind),
        Column("gold_choice", "str", lambda r: r.gold_choice or ""),
        Column("chosen_completion", "str", lambda r: r.winner),
        Column("chosen_model", "str", lambda r: r.chosen_side.model),
        Column("chosen_model_version_id", "int", lambda r: r.chosen_side.model_version_id or 0),
        Column("chosen_model_version", "str", lambda r: r.chosen_side.model_version_name or ""),
        Column("chosen_sampling", "str", lambda r: _sampling(r.chosen_side)),
        Column("rejected_model", "str", lambda r: r.rejected_side.model),
        Column("rejected_model_version_id", "int", lambda r: r.rejected_side.model_version_id or 0),
        Column("rejected_model_version", "str", lambda r: r.rejected_side.model_version_name or ""),
        Column("rejected_sampling", "str", lambda r: _sampling(r.rejected_side)),
    ]
    if aggregated:
        columns += [
            Column("judgment_ids", "int_list", lambda r: [v.judgment_id for v in r.votes_used]),
            Column("raters", "str_list", lambda r: [rater(v.rater_id) for v in r.votes_used]),
            Column("choices", "str_list", lambda r: [v.choice for v in r.votes_used]),
            Column("strengths", "int_list", lambda r: [v.strength for v in r.votes_used]),
            Column("both_bad_votes", "int", lambda r: sum(v.both_bad for v in r.votes_used)),
            Column("flags", "str", lambda r: ",".join(sorted({f for v in r.votes_used for f in v.flags}))),
            Column("rationales", "str_list", lambda r: [v.rationale for v in r.votes_used]),
            Column("time_spent_ms", "int_list", lambda r: [v.time_spent_ms for v in r.votes_used]),
            Column("a_on_left", "bool_list", lambda r: [v.a_on_left for v in r.votes_used]),
            Column("source", "str", lambda r: "+".join(sorted({v.source for v in r.votes_used}))),
        ]
    else:
        columns += [
            Column("judgment_id", "int", lambda r: r.votes_used[0].judgment_id),
            Column("rater", "str", lambda r: rater(r.votes_used[0].rater_id)),
            Column("source", "str", lambda r: r.votes_used[0].source),
            Column("strength", "int", lambda r: r.votes_used[0].strength),
            Column("both_bad", "bool", lambda r: r.votes_used[0].both_bad),
            Column("flags", "str", lambda r: ",".join(r.votes_used[0].flags)),
            Column("rationale", "str", lambda r: r.votes_used[0].rationale),
            Column("time_spent_ms", "int", lambda r: r.votes_used[0].time_spent_ms),
            Column("a_on_left", "bool", lambda r: r.votes_used[0].a_on_left),
            Column("created_at", "timestamp", lambda r: r.votes_used[0].created_at),
        ]
    return columns
