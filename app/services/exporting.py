"""Exports of comparisons and demonstrations as JSONL, Parquet or CSV, with a dataset card.

Rows stream from a server-side cursor (services/preferences.py) through a batched writer, so
memory stays flat however large the export, and an HTTP download starts with the first batch.

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
``flags`` is a comma-separated string (project flags cannot hold commas); sampling settings
are JSON text.

The train/test split is by prompt: a prompt lands in ``test`` when a hash of the split seed and
the prompt's content hash falls below ``test_fraction``, so no prompt is in both splits and the
same prompt always lands in the same split.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import random
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Demonstration, Project, Prompt
from app.schemas.export import EXTENSIONS, ComparisonExport, DemoExport
from app.services import dataset_card
from app.services.preferences import (
    JudgmentFilter,
    PreferenceRow,
    PreferenceStats,
    RuleSet,
    iter_preference_rows,
    rater_ids_for,
)

WRITE_BATCH = 5000  # rows per write to the output (and per chunk of an HTTP download)
PARQUET_ROW_GROUP = 10_000  # rows buffered per Parquet row group (memory vs. file layout)
SPLIT_CACHE = 100_000  # prompt hashes whose split is remembered
# Columns of a ``per_rater`` row that depend on the judgment; the others depend only on the
# comparison and the winner, so they are computed once for the rows that share both.
VOTE_COLUMNS = frozenset(
    {"margin", "judgment_id", "rater", "source", "strength", "both_bad", "flags", "rationale",
     "time_spent_ms", "a_on_left", "created_at"}
)  # fmt: skip
SPLITS = ("train", "test")


class ExportError(ValueError):
    """The export cannot be made as asked (shown to the user as is)."""


# --- columns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # messages | str | int | float | bool | int_list | str_list | bool_list | timestamp
    get: Callable[[Any], Any]


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {
        "messages": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "int_list": pa.list_(pa.int64()),
        "str_list": pa.list_(pa.string()),
        "bool_list": pa.list_(pa.bool_()),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


def transcript(messages: list[dict[str, str]], response: str | None = None) -> str:
    """Anthropic HH-RLHF style: ``\\n\\nHuman: …\\n\\nAssistant: …`` (a system message reads as Human)."""
    turns = [*messages, *([] if response is None else _assistant(response))]
    return "".join(
        f"\n\n{'Assistant' if m['role'] == 'assistant' else 'Human'}: {m['content']}" for m in turns
    )


def prompt_as_text(messages: list[dict[str, str]]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return transcript(messages).lstrip("\n")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _layout_columns(layout: str) -> list[Column]:
    if layout == "conversational":
        return [
            Column("prompt", "messages", lambda r: r.messages),
            Column("chosen", "messages", lambda r: _assistant(r.chosen)),
            Column("rejected", "messages", lambda r: _assistant(r.rejected)),
        ]
    if layout == "implicit":
        return [
            Column("chosen", "messages", lambda r: [*r.messages, *_assistant(r.chosen)]),
            Column("rejected", "messages", lambda r: [*r.messages, *_assistant(r.rejected)]),
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
        Column("prompt_id", "int", lambda r: r.prompt_id),
        Column("kind", "str", lambda r: r.kind),
        Column("gold_choice", "str", lambda r: r.gold_choice or ""),
        Column("chosen_completion", "str", lambda r: r.winner),
        Column("chosen_model", "str", lambda r: r.chosen_side.model_name or ""),
        Column("chosen_model_version_id", "int", lambda r: r.chosen_side.model_version_id or 0),
        Column("chosen_sampling", "str", lambda r: _sampling(r.chosen_side)),
        Column("rejected_model", "str", lambda r: r.rejected_side.model_name or ""),
        Column("rejected_model_version_id", "int", lambda r: r.rejected_side.model_version_id or 0),
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


# --- writers ----------------------------------------------------------------------------------


class _Writer:
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        self.fp = fp
        self.columns = columns
        self.names = [c.name for c in columns]
        self.rows = 0

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the format (Parquet's footer); the file object stays open."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# Built once: ``json.dumps`` with keyword arguments builds a new encoder on every call.
_dumps: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, default=_json_default).encode
_dumps_sorted: Callable[[Any], str] = json.JSONEncoder(sort_keys=True).encode


_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _encode_messages(messages: Any) -> str:
    """``_dumps(messages)`` for the usual ``[{"role": …, "content": …}, …]`` without the encoder."""
    parts = []
    for message in messages:
        if type(message) is not dict or tuple(message) != _ROLE_CONTENT:
            return _dumps(messages)
        role, content = message["role"], message["content"]
        if type(role) is not str or type(content) is not str:
            return _dumps(messages)
        parts.append('{"role": ' + _ENCODE_STR(role) + ', "content": ' + _ENCODE_STR(content) + "}")
    if type(messages) is not list:
        return _dumps(messages)
    return "[" + ", ".join(parts) + "]"


_ROLE_CONTENT = ("role", "content")


def _encode_bool(value: bool) -> str:
    return "true" if value is True else "false" if value is False else _dumps(value)


def _encode_timestamp(value: datetime) -> str:
    return '"' + value.astimezone(UTC).isoformat() + '"'


class JsonlWriter(_Writer):
    """One JSON object per line, the bytes of ``json.dumps(row, ensure_ascii=False)``.

    Each value is encoded by its column's kind (C encoders for strings and numbers) into a
    line template; nested values (messages, lists) are encoded once per object per batch, as
    the rows of a comparison share them.
    """

    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        super().__init__(fp, columns)
        self._template = (
            "{" + ", ".join(_ENCODE_STR(n).replace("%", "%%") + ": %s" for n in self.names) + "}\n"
        )
        self._kinds = [c.kind for c in columns]

    def _encoders(self) -> list[Callable[[Any], str]]:
        cache: dict[int, str] = {}  # by id(): valid while the batch holds its objects

        def nested(value: Any) -> str:
            key = id(value)
            text = cache.get(key)
            if text is None:
                text = cache[key] = _dumps(value)
            return text

        def messages(value: Any) -> str:
            key = id(value)
            text = cache.get(key)
            if text is None:
                text = cache[key] = _encode_messages(value)
            return text

        simple: dict[str, Callable[[Any], str]] = {
            "str": _ENCODE_STR,
            "int": int.__repr__,
            "float": float.__repr__,
            "bool": _encode_bool,
            "timestamp": _encode_timestamp,
            "messages": messages,
        }
        return [simple.get(kind, nested) for kind in self._kinds]

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        encoders, template, names = self._encoders(), self._template, self.names
        lines = []
        for row in rows:
            try:
                lines.append(template % tuple([encode(v) for encode, v in zip(encoders, row, strict=True)]))
            except (TypeError, ValueError, AttributeError):  # an unusual value: the general path
                lines.append(_dumps(dict(zip(names, row, strict=True))) + "\n")
        self.fp.write("".join(lines).encode("utf-8"))
        self.rows += len(rows)


_dumps_csv: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode


class CsvWriter(_Writer):
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        super().__init__(fp, columns)
        self._buffer = io.StringIO(newline="")
        self._csv = csv.writer(self._buffer)
        self._nested = [i for i, c in enumerate(columns) if c.kind.endswith("list") or c.kind == "messages"]
        self._times = [i for i, c in enumerate(columns) if c.kind == "timestamp"]
        self._csv.writerow(self.names)
        self._flush()

    def _flush(self) -> None:
        self.fp.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if self._nested or self._times:
            fixed = []
            for row in rows:
                values = list(row)
                for i in self._nested:
                    values[i] = _dumps_csv(values[i])
                for i in self._times:
                    values[i] = values[i].astimezone(UTC).isoformat()
                fixed.append(values)
            rows = fixed  # type: ignore[assignment]
        self._csv.writerows(rows)
        self._flush()
        self.rows += len(rows)


class _Position:
    """A write-only file object that knows its position (for Parquet inside a zip entry)."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp = fp
        self.pos = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.fp.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ParquetWriter(_Writer):
    def __init__(self, fp: IO[bytes], columns: list[Column]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(fp, columns)
        self._pa = pa
        self.schema = pa.schema([(c.name, _arrow_type(c.kind)) for c in columns])
        self._types = [f.type for f in self.schema]
        self._nested = [c.kind == "messages" or c.kind.endswith("list") for c in columns]
        self._pending: list[tuple[Any, ...]] = []
        self._writer = pq.ParquetWriter(_Position(fp), self.schema, compression="zstd")

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self._pending += rows
        if len(self._pending) >= PARQUET_ROW_GROUP:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        pa = self._pa
        columns = list(zip(*self._pending, strict=True))
        arrays = [
            _arrow_array(pa, values, t, nested)
            for values, t, nested in zip(columns, self._types, self._nested, strict=True)
        ]
        del columns
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += len(self._pending)
        self._pending = []
        del arrays
        pa.default_memory_pool().release_unused()  # keep the peak flat across row groups

    def close(self) -> None:
        self._write_pending()
        self._writer.close()


def _arrow_array(pa: Any, values: Sequence[Any], type_: Any, nested: bool) -> Any:
    """A column array; nested values shared by several rows are converted once (then taken)."""
    if not nested:
        return pa.array(values, type=type_)
    slots: dict[int, int] = {}
    unique: list[Any] = []
    indices = []
    for value in values:
        key = id(value)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(unique)
            unique.append(value)
        indices.append(slot)
    if len(unique) == len(values):
        return pa.array(values, type=type_)
    return pa.array(unique, type=type_).take(pa.array(indices, type=pa.int32()))


WRITERS: dict[str, type[_Writer]] = {"jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter}


# --- the export -------------------------------------------------------------------------------


def split_of(prompt_hash: str, *, test_fraction: float, seed: int) -> str:
    """``train`` or ``test``, decided by the prompt alone (no prompt in both)."""
    if test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{seed}:{prompt_hash}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


@dataclass
class CardStats:
    """What the dataset card reports, gathered in one pass with flat memory."""

    rows: Counter[str] = field(default_factory=Counter)
    comparisons: int = 0
    judgments: int = 0
    raters: set[int] = field(default_factory=set)
    agreement_sum: float = 0.0
    margin_sum: float = 0.0
    agreement_buckets: Counter[str] = field(default_factory=Counter)
    chosen_chars: int = 0
    rejected_chars: int = 0
    chosen_longer: int = 0
    same_length: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    _chosen_sample: list[int] = field(default_factory=list)
    _rejected_sample: list[int] = field(default_factory=list)
    _random: random.Random = field(default_factory=lambda: random.Random(0))
    _last_comparison: int = -1
    _n: int = 0
    preference: PreferenceStats = field(default_factory=PreferenceStats)

    SAMPLE = 20_000  # reservoir for the median lengths

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def add(self, row: PreferenceRow, split: str) -> None:
        self.rows[split] += 1
        if row.comparison_id != self._last_comparison:
            self.comparisons += 1
            self._last_comparison = row.comparison_id
        votes = row.votes_used
        raters, sources = self.raters, self.sources
        for vote in votes:
            raters.add(vote.rater_id)
            sources[vote.source] += 1
        self.judgments += len(votes)
        agreement = row.agreement
        self.agreement_sum += agreement
        self.margin_sum += row.margin
        self.agreement_buckets[_bucket(agreement)] += 1
        chosen, rejected = len(row.chosen_side.text), len(row.rejected_side.text)  # type: ignore[union-attr]
        self.chosen_chars += chosen
        self.rejected_chars += rejected
        self.chosen_longer += chosen > rejected
        self.same_length += chosen == rejected
        self._n = n = self._n + 1
        if n <= self.SAMPLE:
            self._chosen_sample.append(chosen)
            self._rejected_sample.append(rejected)
        else:
            slot = self._random.randrange(n)
            if slot < self.SAMPLE:
                self._chosen_sample[slot], self._rejected_sample[slot] = chosen, rejected

    def median_chars(self) -> tuple[float, float]:
        return _median(self._chosen_sample), _median(self._rejected_sample)


def _bucket(agreement: float) -> str:
    if agreement >= 1.0:
        return "1.0"
    if agreement >= 0.75:
        return "0.75-1.0"
    if agreement >= 0.5:
        return "0.5-0.75"
    return "<0.5"


def _median(values: list[int]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class PreparedExport:
    """An export ready to run: its columns, and a generator of (split, row tuple) batches."""

    kind: str  # comparisons | demos
    project: Project
    spec: ComparisonExport | DemoExport
    columns: list[Column]
    batches: Callable[[], Iterator[list[tuple[str, tuple[Any, ...]]]]]
    stats: CardStats
    rules: list[str]
    filters: list[str]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.spec.format]

    def card(self, files: dict[str, str]) -> str:
        return dataset_card.render_card(export=self, files=files)


def prepare_comparisons(
    session: Session, *, project: Project, spec: ComparisonExport, secret_key: str
) -> PreparedExport:
    rater_ids: frozenset[int] | None = None
    if spec.raters:
        found = rater_ids_for(session, spec.raters)
        unknown = sorted(set(spec.raters) - set(found))
        if unknown:
            raise ExportError(f"no user named {', '.join(unknown)}")
        rater_ids = frozenset(found.values())
    rules = RuleSet(spec.aggregation, spec.ties, spec.include_both_bad, spec.min_agreement)
    selection = JudgmentFilter(
        label_source=spec.label_source,
        date_from=spec.date_from,
        date_to=spec.date_to,
        rater_ids=rater_ids,
        exclude_flags=frozenset(spec.exclude_flags),
        gold=spec.gold,
    )
    columns = comparison_columns(
        spec.resolved_layout,
        aggregated=spec.aggregation != "per_rater",
        metadata=spec.metadata,
        rater=Pseudonyms(secret_key),
    )
    stats = CardStats()
    getters = [c.get for c in columns]
    with_split = spec.metadata
    # per_rater: the values that depend only on (comparison, winner) are computed once for the
    # rows that share them (and so are the same objects, which the writers encode once).
    per_rater = spec.aggregation == "per_rater"
    vote_getters = [(i, c.get) for i, c in enumerate(columns) if not per_rater or c.name in VOTE_COLUMNS]
    shared_getters = [(i, c.get) for i, c in enumerate(columns) if per_rater and c.name not in VOTE_COLUMNS]
    width = len(getters) + with_split
    if with_split:
        columns.append(Column("split", "str", lambda r: r))
    add = stats.add
    test_fraction, seed = spec.test_fraction, spec.split_seed

    def batches() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        batch: list[tuple[str, tuple[Any, ...]]] = []
        splits: dict[str, str] = {}
        rows = iter_preference_rows(
            session, project_id=project.id, rules=rules, selection=selection, stats=stats.preference
        )
        comparison_id = -1
        by_winner: dict[str, list[Any]] = {}  # the current comparison's shared values per winner
        split = "train"
        for row in rows:
            if row.comparison_id != comparison_id:
                comparison_id = row.comparison_id
                by_winner = {}
                split = splits.get(row.prompt_hash)  # type: ignore[assignment]
                if split is None:
                    if len(splits) >= SPLIT_CACHE:
                        splits.clear()
                    split = splits[row.prompt_hash] = split_of(
                        row.prompt_hash, test_fraction=test_fraction, seed=seed
                    )
            shared = by_winner.get(row.winner)  # type: ignore[assignment]
            if shared is None:
                shared = [None] * width
                for i, get in shared_getters:
                    shared[i] = get(row)
                if with_split:
                    shared[-1] = split
                if per_rater:
                    by_winner[row.winner] = shared
            add(row, split)
            values = shared.copy()
            for i, get in vote_getters:
                values[i] = get(row)
            batch.append((split, tuple(values)))
            if len(batch) >= WRITE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    return PreparedExport(
        kind="comparisons",
        project=project,
        spec=spec,
        columns=columns,
        batches=batches,
        stats=stats,
        rules=rules.describe(),
        filters=_describe_filters(spec),
    )


def _describe_filters(spec: ComparisonExport | DemoExport) -> list[str]:
    lines = []
    if isinstance(spec, ComparisonExport):
        lines.append(f"Label source: {spec.label_source}.")
        lines.append(f"Gold pairs: {spec.gold}.")
        if spec.raters:
            lines.append(f"Raters: {len(spec.raters)} selected.")
        if spec.exclude_flags:
            lines.append(f"Excluded flags: {', '.join(spec.exclude_flags)}.")
        if spec.min_agreement:
            lines.append(f"Minimum agreement: {spec.min_agreement:g}.")
    if spec.date_from:
        lines.append(f"Created at or after {spec.date_from.isoformat()}.")
    if spec.date_to:
        lines.append(f"Created before {spec.date_to.isoformat()}.")
    return lines


def prepare_demos(session: Session, *, project: Project, spec: DemoExport) -> PreparedExport:
    layout = spec.resolved_layout
    if layout == "messages":
        columns = [Column("messages", "messages", lambda r: [*r[1], *_assistant(r[2])])]
    else:
        columns = [
            Column("prompt", "str", lambda r: prompt_as_text(r[1])),
            Column("response", "str", lambda r: r[2]),
        ]
    if spec.metadata:
        columns += [
            Column("demonstration_id", "int", lambda r: r[0]),
            Column("prompt_id", "int", lambda r: r[3]),
            Column("created_at", "timestamp", lambda r: r[5]),
        ]
    getters = [c.get for c in columns]
    if spec.metadata:
        columns.append(Column("split", "str", lambda r: r))
    stats = CardStats()
    d, p = Demonstration.__table__.c, Prompt.__table__.c
    query = (
        select(d.id, Prompt.messages, d.response, d.prompt_id, p.content_hash, Demonstration.created_at)
        .join(Prompt.__table__, p.id == d.prompt_id)
        .where(d.project_id == project.id)
        .order_by(d.id)
    )
    if spec.date_from:
        query = query.where(Demonstration.created_at >= spec.date_from)
    if spec.date_to:
        query = query.where(Demonstration.created_at < spec.date_to)

    def batches() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        batch: list[tuple[str, tuple[Any, ...]]] = []
        result = session.execute(query.execution_options(yield_per=WRITE_BATCH))
        try:
            for record in result:
                split = split_of(record[4], test_fraction=spec.test_fraction, seed=spec.split_seed)
                stats.rows[split] += 1
                stats.chosen_chars += len(record[2])
                values = [get(record) for get in getters]
                if spec.metadata:
                    values.append(split)
                batch.append((split, tuple(values)))
                if len(batch) >= WRITE_BATCH:
                    yield batch
                    batch = []
        finally:
            result.close()
        if batch:
            yield batch

    return PreparedExport(
        kind="demos",
        project=project,
        spec=spec,
        columns=columns,
        batches=batches,
        stats=stats,
        rules=["Each demonstration is one row: the prompt's conversation and the written response."],
        filters=_describe_filters(spec),
    )


# --- outputs ----------------------------------------------------------------------------------


class _Chunks(io.RawIOBase):
    """A write-only stream whose bytes are collected and taken out in chunks (HTTP bodies)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def stream_file(export: PreparedExport, *, split: str = "all") -> Iterator[bytes]:
    """One data file (the rows of ``split``, or all of them with the ``split`` column), in chunks."""
    sink = _Chunks()
    writer = WRITERS[export.spec.format](sink, export.columns)  # type: ignore[arg-type]
    for batch in export.batches():
        writer.write([values for row_split, values in batch if split in ("all", row_split)])
        chunk = sink.take()
        if chunk:
            yield chunk
    writer.close()
    yield sink.take()


def data_path(export: PreparedExport, split: str) -> str:
    return f"data/{split}{export.extension}"


def stream_archive(export: PreparedExport) -> Iterator[bytes]:
    """A zip of README.md (the dataset card) and one data file per split, in chunks.

    The train file streams straight into the archive; the test rows wait in a temporary file
    (spilled to disk past a few MB) and follow it; the card, which needs the final counts,
    comes last.
    """
    sink = _Chunks()
    fmt = export.spec.format
    compression = zipfile.ZIP_STORED if fmt == "parquet" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(sink, "w", compression=compression, compresslevel=1) as archive:  # type: ignore[arg-type]
        train_entry = archive.open(data_path(export, "train"), "w", force_zip64=True)
        train = WRITERS[fmt](train_entry, export.columns)
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spill:
            test = WRITERS[fmt](spill, export.columns)  # type: ignore[arg-type]
            for batch in export.batches():
                train.write([values for split, values in batch if split == "train"])
                test.write([values for split, values in batch if split == "test"])
                chunk = sink.take()
                if chunk:
                    yield chunk
            train.close()
            train_entry.close()
            test.close()
            files = {"train": data_path(export, "train")}
            if export.stats.rows["test"]:
                files["test"] = data_path(export, "test")
                spill.seek(0)
                with archive.open(files["test"], "w", force_zip64=True) as entry:
                    shutil.copyfileobj(spill, entry, 1024 * 1024)  # type: ignore[misc]
                    yield sink.take()
        archive.writestr("README.md", export.card(files))
    yield sink.take()


def write_directory(
    export: PreparedExport, directory: Any, *, progress: Callable[[int], None] | None = None
) -> dict[str, str]:
    """Write data files and README.md under ``directory``; returns split -> relative path."""
    from pathlib import Path

    root = Path(directory)
    (root / "data").mkdir(parents=True, exist_ok=True)
    fmt = export.spec.format
    handles = {split: (root / data_path(export, split)).open("wb") for split in SPLITS}
    try:
        writers = {split: WRITERS[fmt](handles[split], export.columns) for split in SPLITS}
        for batch in export.batches():
            for split in SPLITS:
                writers[split].write([values for s, values in batch if s == split])
            if progress is not None:
                progress(len(batch))
        for writer in writers.values():
            writer.close()
    finally:
        for handle in handles.values():
            handle.close()
    files = {}
    for split in SPLITS:
        if export.stats.rows[split] or split == "train":
            files[split] = data_path(export, split)
        else:
            (root / data_path(export, split)).unlink()
    (root / "README.md").write_text(export.card(files), encoding="utf-8")
    return files


def write_file(export: PreparedExport, path: Any, *, progress: Callable[[int], None] | None = None) -> None:
    """All rows in one file (with the ``split`` column when metadata is on)."""
    with open(path, "wb") as handle:
        writer = WRITERS[export.spec.format](handle, export.columns)
        for batch in export.batches():
            writer.write([values for _, values in batch])
            if progress is not None:
                progress(len(batch))
        writer.close()


def preview(export: PreparedExport, *, limit: int = 5) -> tuple[list[dict[str, Any]], str]:
    """The first rows (as dicts) and the card of the whole export (one full pass, nothing written)."""
    first: list[dict[str, Any]] = []
    names = [c.name for c in export.columns]
    for batch in export.batches():
        for _, values in batch:
            if len(first) < limit:
                first.append(dict(zip(names, values, strict=True)))
    files = {split: data_path(export, split) for split in SPLITS if export.stats.rows[split]}
    return first, export.card(files or {"train": data_path(export, "train")})


def filename(export: PreparedExport, *, archive: bool, split: str = "all") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    base = f"{export.project.slug}-{export.kind}-{stamp}"
    if archive:
        return base + ".zip"
    return base + ("" if split == "all" else f"-{split}") + export.extension


def iter_rows(batches: Iterable[list[tuple[str, tuple[Any, ...]]]]) -> Iterator[tuple[Any, ...]]:
    for batch in batches:
        for _, values in batch:
            yield values
