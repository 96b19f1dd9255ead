"""Existing preference data: TRL prompt/chosen/rejected and Anthropic HH-RLHF transcripts.

Each row becomes a pair (completion A = the chosen response, B = the rejected one) and a
judgment "A better" (strength 1, source human) by the inactive account `IMPORT_RATER`, so the
label is exported like any other and raters can add more votes up to the project's overlap.
Accepted rows (.jsonl, .json or .parquet):

* TRL explicit prompt: ``prompt`` (string or messages), ``chosen`` and ``rejected`` (strings or
  a list holding the assistant message);
* TRL implicit prompt: ``chosen`` and ``rejected`` are whole conversations (message lists)
  that share everything but the last, assistant, message;
* HH-RLHF: ``chosen`` and ``rejected`` are ``"\\n\\nHuman: …\\n\\nAssistant: …"`` transcripts that
  share everything but the last Assistant turn.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import PurePath
from typing import IO, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Choice, Comparison, Judgment, JudgmentSource, Project, Role, User
from app.services.importing.parse import unstorable
from app.services.importing.read import EXTENSIONS, RawRow, Source, decode, read_json, read_jsonl, read_whole
from app.services.importing.schema import ImportFailed, ImportKind, ImportProblem, ImportReport, Problems
from app.services.importing.store import BATCH, HELD_BYTES, chunks, import_file, insert_rows

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


def _preference_to_pair(values: dict[str, Any], problems: Problems) -> dict[str, Any] | None:
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
    user_id = session.scalar(select(User.id).where(User.username == IMPORT_RATER))
    if user_id is None:
        # An unusable password hash and no active flag: the account can never log in.
        user = User(username=IMPORT_RATER, password_hash="!", role=Role.rater, is_active=False)
        session.add(user)
        session.flush()
        user_id = user.id
    return int(user_id)


def _raw_rows(filename: str, data: Source, problems: list[ImportProblem]) -> Iterator[RawRow]:
    """The records of a preference file (a .jsonl one read line by line)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(io.BytesIO(data) if isinstance(data, bytes) else data).to_pylist()
        except Exception as error:  # noqa: BLE001 - any unreadable file
            raise ImportFailed(filename, [ImportProblem(0, None, f"not a Parquet file: {error}")]) from None
        for number, record in enumerate(records, 1):
            yield RawRow(number, record, where="record")
    elif EXTENSIONS.get(suffix) == "jsonl":
        yield from read_jsonl(filename, data, problems)
    elif EXTENSIONS.get(suffix) == "json":
        rows, found = read_json(decode(filename, read_whole(data)))
        problems += found
        yield from rows
    else:
        raise ImportFailed(filename, [ImportProblem(0, None, "use a .jsonl, .json or .parquet file")])


def _pairs_file(filename: str, data: Source) -> IO[bytes]:
    """The preference rows as a pairs file (JSONL), spooled to disk when large; `ImportFailed`
    listing every problem when any row is not a preference row."""
    problems: list[ImportProblem] = []
    out = tempfile.SpooledTemporaryFile(max_size=HELD_BYTES)  # noqa: SIM115 - closed by the caller
    count = 0
    try:
        if not isinstance(data, bytes):
            data.seek(0)
        for raw in _raw_rows(filename, data, problems):
            count += 1
            row_problems = Problems(raw.line, raw.where)
            pair = None
            if not unstorable(raw.values, row_problems):
                pair = _preference_to_pair(raw.values, row_problems)
            problems += row_problems.items
            if pair is not None and not problems:  # once a problem is found, only problems count
                out.write(json.dumps(pair, ensure_ascii=False).encode() + b"\n")
        if not count and not problems:
            problems.append(ImportProblem(0, None, "no rows: the file holds no records"))
        if problems:
            raise ImportFailed(filename, sorted(problems, key=lambda p: p.line))
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def import_preferences(session: Session, *, project: Project, filename: str, data: Source) -> ImportReport:
    """Import TRL or HH-RLHF preference rows as pairs, each with its label as a judgment.

    All or nothing, like `import_file`; rows whose pair is already in the project are skipped
    (their label is not added again).
    """
    pairs_file = _pairs_file(filename, data)
    before = session.scalar(select(func.coalesce(func.max(Comparison.id), 0))) or 0
    with pairs_file:
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
    for batch in chunks(new_ids, BATCH):
        insert_rows(
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
                for comparison_id in batch
            ],
        )
    for chunk in chunks(new_ids):
        session.execute(update(Comparison).where(Comparison.id.in_(chunk)).values(judgment_count=1))
    return report
