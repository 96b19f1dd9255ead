"""Writing validated rows, all or nothing, without doubling anything already stored.

* Only after validation succeeds are rows written, as bulk INSERTs in the session's transaction;
  the caller commits. A rollback of the caller's transaction therefore leaves nothing behind.
* Nothing is doubled. Prompts are unique per project by `messages_hash`, and an existing prompt is
  reused by pairs and demonstrations. A pair whose prompt and two completion texts (in either
  order) already form a comparison in the project, or appeared earlier in the file, is skipped;
  completions with the same text for the same prompt are reused. Demonstrations are unique per
  (prompt, `text_hash(response)`). A ranking whose prompt and set of completion texts (in any
  order) already form a ranking in the project, or appeared earlier in the file, is skipped, its
  completions reused by text as for pairs. Skipped rows are listed in `ImportReport.duplicates`.
* Lookups are done in bulk (a few queries per file, chunked), never one query per row. On
  PostgreSQL each chunk is bound as one array (`= ANY(:values)`): psycopg prepares a statement
  run five times, and the generic plan of an `IN` list of 500 parameters filters every row of
  the project against the list, a cost that grows with each batch the import has written; the
  array's generic plan looks each value up in the index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, any_, insert, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from app.db import is_postgres
from app.models import Base, Comparison, ComparisonKind, Completion, Demonstration, Project, Prompt, Ranking
from app.services.content import text_hash
from app.services.importing.parse import ParsedRow, check_rows, iter_rows, parse_rows
from app.services.importing.read import Source
from app.services.importing.schema import ImportKind, ImportProblem, ImportReport

CHUNK = 500  # values per IN (...) list: well under SQLite's limit on bound parameters
BATCH = 2000  # rows looked up and written together: Python memory stays flat however long the file
HELD_BYTES = 8 * 1024 * 1024  # a file up to this size is parsed once and its rows held

_T = TypeVar("_T")


def import_file(
    session: Session,
    *,
    project: Project,
    kind: ImportKind | str,
    filename: str,
    data: Source,
) -> ImportReport:
    """Import a whole file into ``project``, or nothing: raise `ImportFailed` on any problem.

    Rows are validated first (every problem is collected); only then are the new rows inserted,
    `BATCH` rows at a time, in the session's transaction. A file larger than `HELD_BYTES` is read
    twice (validated, then read again to be written) so that its rows are never all held. The
    caller commits; rolling back its transaction leaves nothing behind. Rows already in the
    project or earlier in the file are skipped and listed in the report's ``duplicates``. Two
    imports of the same new prompt racing each other end with an IntegrityError in one of them
    (prompts are unique per project).
    """
    kind = ImportKind(kind)
    rows: Iterable[ParsedRow]
    rank_k = project.rank_k if kind == ImportKind.rankings else None
    if _size(data) <= HELD_BYTES:
        rows = parse_rows(kind=kind, filename=filename, data=data, rank_k=rank_k)
        count = len(rows)
    else:
        count = check_rows(kind=kind, filename=filename, data=data, rank_k=rank_k)
        rows = iter_rows(kind=kind, filename=filename, data=_rewound(data), problems=[], rank_k=rank_k)
    report = ImportReport(kind=kind, filename=filename, rows=count, created=0)
    writer = _Writer(session, project, kind, report)
    for batch in chunks(rows, BATCH):
        writer.write(batch)
    return report


def _size(data: Source) -> int:
    if isinstance(data, bytes):
        return len(data)
    data.seek(0, 2)
    size = data.tell()
    data.seek(0)
    return size


def _rewound(data: Source) -> Source:
    if not isinstance(data, bytes):
        data.seek(0)
    return data


def _digest(*parts: str) -> bytes:
    """A 16-byte key standing for ``parts`` (texts are not held to find duplicates)."""
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Writer:
    """Writes a file's valid rows batch by batch, in file order, remembering only a digest and
    the line of each distinct row to name duplicates."""

    def __init__(self, session: Session, project: Project, kind: ImportKind, report: ImportReport) -> None:
        self.session, self.project, self.kind, self.report = session, project, kind, report
        self.first: dict[bytes, int] = {}  # row key -> line of its first occurrence
        self.stored: set[bytes] = set()  # keys already in the project before the import

    def key(self, row: ParsedRow) -> bytes:
        if self.kind == ImportKind.prompts:
            return _digest(row.prompt_hash)
        if self.kind == ImportKind.pairs:
            return _digest(*_pair_key(row.prompt_hash, row.completion_a or "", row.completion_b or ""))
        if self.kind == ImportKind.rankings:
            return _digest(row.prompt_hash, *_ranking_key(row.completions or ()))
        return _digest(row.prompt_hash, text_hash(row.response or ""))

    def write(self, rows: list[ParsedRow]) -> None:
        session, project, report = self.session, self.project, self.report
        candidates: list[tuple[bytes, ParsedRow]] = []
        later: list[tuple[bytes, ParsedRow]] = []
        for row in rows:
            row_key = self.key(row)
            if row_key in self.first:
                later.append((row_key, row))
            else:
                self.first[row_key] = row.line
                candidates.append((row_key, row))

        prompt_ids = _prompt_ids(session, project, {row.prompt_hash for _, row in candidates})
        existing_prompt_ids = sorted(set(prompt_ids.values()))
        if self.kind == ImportKind.prompts:
            stored: Callable[[ParsedRow], bool] = lambda row: row.prompt_hash in prompt_ids  # noqa: E731
        elif self.kind == ImportKind.pairs:
            stored_pairs = _stored_pairs(session, project, existing_prompt_ids)

            def stored(row: ParsedRow) -> bool:
                prompt_id = prompt_ids.get(row.prompt_hash)
                key = _pair_key(prompt_id or 0, row.completion_a or "", row.completion_b or "")
                return prompt_id is not None and key in stored_pairs
        elif self.kind == ImportKind.rankings:
            stored_rankings = _stored_rankings(session, project, existing_prompt_ids)

            def stored(row: ParsedRow) -> bool:
                prompt_id = prompt_ids.get(row.prompt_hash)
                return (prompt_id, _ranking_key(row.completions or ())) in stored_rankings
        else:
            stored_demos = _stored_demos(session, project, existing_prompt_ids)

            def stored(row: ParsedRow) -> bool:
                prompt_id = prompt_ids.get(row.prompt_hash)
                return (prompt_id, text_hash(row.response or "")) in stored_demos

        fresh: list[ParsedRow] = []
        skipped: list[ImportProblem] = []
        for row_key, row in candidates:
            if stored(row):
                self.stored.add(row_key)
                skipped.append(_duplicate(row, None))
            else:
                fresh.append(row)
        for row_key, row in later:
            earlier = None if row_key in self.stored else self.first[row_key]
            skipped.append(_duplicate(row, earlier))
        report.duplicates += sorted(skipped, key=lambda problem: problem.line)

        report.created_prompts += _create_prompts(session, project, fresh, prompt_ids)
        if self.kind == ImportKind.pairs:
            _create_pairs(session, project, fresh, prompt_ids, existing_prompt_ids)
        elif self.kind == ImportKind.rankings:
            _create_rankings(session, project, fresh, prompt_ids, existing_prompt_ids)
        elif self.kind == ImportKind.demos:
            insert_rows(
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
        report.created += len(fresh)


def _duplicate(row: ParsedRow, earlier_line: int | None) -> ImportProblem:
    message = "already in the project" if earlier_line is None else f"duplicate of {row.where} {earlier_line}"
    return ImportProblem(row.line, None, message, row.where)


def chunks(values: Iterable[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert_rows(session: Session, model: type[Base], values: list[dict[str, Any]]) -> None:
    """Bulk INSERT (executemany / multi-row VALUES), not one statement per row.

    The ORM batches consecutive rows with the same keys, so rows are grouped by their keys.
    """
    if values:
        values = sorted(values, key=lambda row: sorted(row))
        session.execute(insert(model), values)


def _among(session: Session, column: InstrumentedAttribute[Any], values: list[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:values)``, one array parameter."""
    if is_postgres(session):
        return column == any_(literal(values, ARRAY(column.type)))
    return column.in_(values)


def _prompt_ids(session: Session, project: Project, hashes: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(sorted(hashes)):
        query = select(Prompt.content_hash, Prompt.id).where(
            Prompt.project_id == project.id, _among(session, Prompt.content_hash, chunk)
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
    insert_rows(
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
    for chunk in chunks(prompt_ids):
        query = (
            select(Comparison.prompt_id, comp_a.content_hash, comp_b.content_hash)
            .join(comp_a, comp_a.id == Comparison.completion_a_id)
            .join(comp_b, comp_b.id == Comparison.completion_b_id)
            .where(Comparison.project_id == project.id, _among(session, Comparison.prompt_id, chunk))
        )
        for prompt_id, hash_a, hash_b in session.execute(query):
            low, high = sorted((hash_a, hash_b))
            stored.add((prompt_id, low, high))
    return stored


def _stored_demos(session: Session, project: Project, prompt_ids: list[int]) -> set[tuple[int, str]]:
    stored: set[tuple[int, str]] = set()
    for chunk in chunks(prompt_ids):
        query = select(Demonstration.prompt_id, Demonstration.content_hash).where(
            Demonstration.project_id == project.id, _among(session, Demonstration.prompt_id, chunk)
        )
        stored.update((prompt_id, content_hash) for prompt_id, content_hash in session.execute(query))
    return stored


def _completion_ids(session: Session, prompt_ids: Iterable[int]) -> dict[tuple[int, str], int]:
    """(prompt id, text hash) -> id of the oldest completion with that text, for these prompts."""
    found: dict[tuple[int, str], int] = {}
    for chunk in chunks(sorted(set(prompt_ids))):
        query = (
            select(Completion.prompt_id, Completion.content_hash, Completion.id)
            .where(_among(session, Completion.prompt_id, chunk))
            .order_by(Completion.id.desc())  # so that the oldest one is written last
        )
        for prompt_id, content_hash, completion_id in session.execute(query):
            found[(prompt_id, content_hash)] = completion_id
    return found


def _ranking_key(texts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(text_hash(text) for text in texts))


def _stored_rankings(
    session: Session, project: Project, prompt_ids: list[int]
) -> set[tuple[int, tuple[str, ...]]]:
    """(prompt id, sorted completion hashes) of the project's rankings of these prompts."""
    stored: set[tuple[int, tuple[str, ...]]] = set()
    hashes = _completion_hashes(session, prompt_ids)
    for chunk in chunks(prompt_ids):
        query = select(Ranking.prompt_id, Ranking.completion_ids).where(
            Ranking.project_id == project.id, _among(session, Ranking.prompt_id, chunk)
        )
        for prompt_id, completion_ids in session.execute(query):
            stored.add((prompt_id, tuple(sorted(hashes[cid] for cid in completion_ids))))
    return stored


def _completion_hashes(session: Session, prompt_ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in chunks(prompt_ids):
        query = select(Completion.id, Completion.content_hash).where(
            _among(session, Completion.prompt_id, chunk)
        )
        found.update((completion_id, content_hash) for completion_id, content_hash in session.execute(query))
    return found


def _create_completions(
    session: Session,
    rows: Sequence[tuple[int, str, str | None, dict[str, Any] | None]],
    existing_prompt_ids: list[int],
) -> dict[tuple[int, str], int]:
    """(prompt id, text hash) -> completion id for every (prompt id, text, model, sampling) of
    `rows`: completions already stored for the file's prompts are reused by text; a text that
    comes back within the file keeps the provenance given where it first appeared."""
    completion_ids = _completion_ids(session, existing_prompt_ids)
    new: dict[tuple[int, str], dict[str, Any]] = {}
    for prompt_id, text, model, sampling in rows:
        key = (prompt_id, text_hash(text))
        if key not in completion_ids and key not in new:
            new[key] = {"prompt_id": prompt_id, "text": text, "content_hash": key[1], "model_name": model}
            if sampling is not None:  # left out, not None: None would store a JSON null
                new[key]["sampling"] = sampling
    insert_rows(session, Completion, list(new.values()))
    if new:
        created = _completion_ids(session, {prompt_id for prompt_id, _ in new})
        completion_ids.update((key, created[key]) for key in new)
    return completion_ids


def _create_rankings(
    session: Session,
    project: Project,
    rows: list[ParsedRow],
    prompt_ids: dict[str, int],
    existing_prompt_ids: list[int],
) -> None:
    texts = [
        (prompt_ids[row.prompt_hash], text, (row.models or ())[i] if row.models else None, None)
        for row in rows
        for i, text in enumerate(row.completions or ())
    ]
    completion_ids = _create_completions(session, texts, existing_prompt_ids)
    values = []
    for row in rows:
        prompt_id = prompt_ids[row.prompt_hash]
        value: dict[str, Any] = {
            "project_id": project.id,
            "prompt_id": prompt_id,
            "completion_ids": [
                completion_ids[(prompt_id, text_hash(text))] for text in row.completions or ()
            ],
            "kind": ComparisonKind.gold if row.gold_ranks else ComparisonKind.regular,
        }
        if row.gold_ranks:  # left out otherwise: None would store a JSON null
            value["gold_ranks"] = list(row.gold_ranks)
        values.append(value)
    insert_rows(session, Ranking, values)


def _create_pairs(
    session: Session,
    project: Project,
    rows: list[ParsedRow],
    prompt_ids: dict[str, int],
    existing_prompt_ids: list[int],
) -> None:
    texts = [
        (prompt_ids[row.prompt_hash], text or "", model, sampling)
        for row in rows
        for text, model, sampling in (
            (row.completion_a, row.model_a, row.sampling_a),
            (row.completion_b, row.model_b, row.sampling_b),
        )
    ]
    completion_ids = _create_completions(session, texts, existing_prompt_ids)

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
    insert_rows(session, Comparison, values)
