"""Submitting written and improved demonstrations, and undoing the last one.

* A submission is stored once per (task, writer): a retried or double-clicked submit returns the
  stored demonstration (`created` False) instead of writing a second one.
* Bad input (empty, whitespace only, NUL, over the project's limit) is refused before anything
  is written; the rater's draft stays as it was.
* A late submit (lease expired, or the task skipped) is kept while the task has a free slot;
  otherwise it is refused with `PairFilled` (the draft stays).
* Rater-written rows hash their text together with their task and author, so that two writers'
  equal answers are both stored (the `duplicate` lazy flag marks them) and never collide with an
  imported demonstration of the same text.
* An improvement that changed the text is also a preference: the edited text is stored as a
  Completion (no model version: its author is the demonstration's) and a Comparison (edited = A,
  original = B) with one Judgment of source ``edit`` by the writer, A better. Export and training
  take or leave it by label source like ``human`` and ``ai``.
* Undo withdraws the writer's last demonstration of the project within the window while nobody
  has reviewed it: the row (and its edit preference) goes, the task's slot and lease come back,
  and the text becomes the draft again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import (
    AssignmentStatus,
    Choice,
    Comparison,
    ComparisonKind,
    Completion,
    Demonstration,
    DemonstrationSource,
    Draft,
    Judgment,
    JudgmentSource,
    Project,
    ReviewStatus,
    WritingAssignment,
    WritingKind,
)
from app.models.types import utcnow
from app.services.content import text_hash
from app.services.rating.common import PairFilled, require_rater
from app.services.writing.assignment import _has_room, lock_task, own_assignment
from app.services.writing.checks import check_answer, edit_distance, lazy_flags, unified_diff

MAX_TIME_SPENT_MS = 60 * 60 * 1000
SOURCES = {WritingKind.write: DemonstrationSource.written, WritingKind.improve: DemonstrationSource.improved}


def written_hash(task_id: int, author_id: int, text: str) -> str:
    return text_hash(f"written:{task_id}:{author_id}\n{text}")


def submit(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    assignment_id: int,
    text: str,
    time_spent_ms: int = 0,
    now: datetime | None = None,
) -> tuple[Demonstration, bool]:
    """Stores the rater's answer to the assigned task; (the demonstration, whether it is new)."""
    now = now or utcnow()
    assignment = own_assignment(session, project, rater_id, assignment_id)
    stored = session.scalars(
        select(Demonstration).where(
            Demonstration.writing_task_id == assignment.writing_task_id, Demonstration.author_id == rater_id
        )
    ).first()
    if stored is not None:
        return stored, False
    text = check_answer(text, max_chars=project.max_answer_chars)
    task = lock_task(session, assignment.writing_task_id)
    held = assignment.status == AssignmentStatus.active and assignment.lease_expires_at > now
    if not held and not _has_room(session, project, task.id, rater_id, now):
        assignment.status = AssignmentStatus.lapsed
        session.flush()
        raise PairFilled("Enough writers answered this task while it was away from you; your draft is kept.")

    original = session.get(Completion, task.completion_id) if task.completion_id is not None else None
    edits = select(Comparison.completion_a_id).join(Judgment, Judgment.comparison_id == Comparison.id)
    edits = edits.where(Comparison.prompt_id == task.prompt_id, Judgment.source == JudgmentSource.edit)
    completions = list(session.scalars(
        select(Completion.text).where(Completion.prompt_id == task.prompt_id, Completion.id.not_in(edits))
    ))  # fmt: skip
    others = list(session.scalars(
        select(Demonstration.response).where(
            Demonstration.prompt_id == task.prompt_id,
            Demonstration.author_id.is_not(None),
            Demonstration.author_id != rater_id,
        )
    ))  # fmt: skip
    flags = lazy_flags(
        text,
        kind=task.kind,
        start=original.text if original else None,
        completions=completions,
        others=others,
    )
    demonstration = Demonstration(
        project_id=project.id, prompt_id=task.prompt_id, response=text,
        content_hash=written_hash(task.id, rater_id, text),
        source=SOURCES[WritingKind(task.kind)],
        author_id=rater_id, writing_task_id=task.id, review_status=ReviewStatus.pending, review_count=0,
        lazy_flags=flags, time_spent_ms=max(0, min(int(time_spent_ms), MAX_TIME_SPENT_MS)), created_at=now,
    )  # fmt: skip
    if original is not None:
        demonstration.edited_from_completion_id = original.id
        demonstration.edited_from_model_version_id = original.model_version_id
        demonstration.diff = unified_diff(original.text, text)
        demonstration.edit_distance = edit_distance(original.text, text)
        if original.text != text:
            _store_edit_preference(session, project, rater_id, original, text, now)
    session.add(demonstration)
    task.submission_count += 1
    assignment.status = AssignmentStatus.done
    session.execute(delete(Draft).where(Draft.user_id == rater_id, Draft.writing_task_id == task.id))
    session.flush()
    return demonstration, True


def _store_edit_preference(
    session: Session, project: Project, rater_id: int, original: Completion, text: str, now: datetime
) -> None:
    edited = Completion(prompt_id=original.prompt_id, text=text, content_hash=text_hash(text), created_at=now)
    session.add(edited)
    session.flush()
    comparison = Comparison(
        project_id=project.id, prompt_id=original.prompt_id, completion_a_id=edited.id,
        completion_b_id=original.id, kind=ComparisonKind.regular, created_at=now,
        judgment_count=1,  # the edit's judgment; raters are never served an edit pair (NOT_AN_EDIT)
    )  # fmt: skip
    session.add(comparison)
    session.flush()
    session.add(Judgment(
        comparison_id=comparison.id, rater_id=rater_id, project_id=project.id, choice=Choice.A, strength=1,
        a_on_left=True, source=JudgmentSource.edit, created_at=now,
    ))  # fmt: skip


def edit_completion(session: Session, demonstration: Demonstration) -> Completion | None:
    """The completion that holds an improved demonstration's text in its edit preference."""
    if demonstration.edited_from_completion_id is None or demonstration.author_id is None:
        return None
    return session.scalars(
        select(Completion)
        .join(Comparison, Comparison.completion_a_id == Completion.id)
        .join(Judgment, Judgment.comparison_id == Comparison.id)
        .where(
            Comparison.completion_b_id == demonstration.edited_from_completion_id,
            Judgment.source == JudgmentSource.edit,
            Judgment.rater_id == demonstration.author_id,
            Completion.text == demonstration.response,
        )
        .limit(1)
    ).first()


def undo_last(
    session: Session, *, project: Project, rater_id: int, window: timedelta, now: datetime | None = None
) -> WritingAssignment | None:
    """Withdraws the rater's last unreviewed demonstration of the window; its assignment (leased
    again, the text as the draft), or None when there is nothing to undo."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    demonstration = session.scalars(
        select(Demonstration)
        .where(
            Demonstration.author_id == rater_id,
            Demonstration.project_id == project.id,
            Demonstration.writing_task_id.is_not(None),
            Demonstration.created_at >= now - window,
        )
        .order_by(Demonstration.created_at.desc(), Demonstration.id.desc())
        .limit(1)
    ).first()
    if demonstration is None or demonstration.review_count > 0:
        return None
    assert demonstration.writing_task_id is not None
    task = lock_task(session, demonstration.writing_task_id)
    assignment = session.scalars(
        select(WritingAssignment).where(
            WritingAssignment.writing_task_id == task.id, WritingAssignment.rater_id == rater_id
        )
    ).one()
    edited = edit_completion(session, demonstration)
    if edited is not None:
        session.delete(edited)  # its comparison and the edit judgment go with it
    text = demonstration.response
    session.delete(demonstration)
    task.submission_count = max(0, task.submission_count - 1)
    assignment.status = AssignmentStatus.active
    assignment.leased_at, assignment.lease_expires_at = now, now + timedelta(seconds=project.lease_seconds)
    session.add(Draft(user_id=rater_id, writing_task_id=task.id, text=text, updated_at=now))
    session.flush()
    return assignment
