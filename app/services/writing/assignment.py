"""Writing tasks handed to raters: claims with leases (like pairs), the task as shown (the
conversation, the text an improve task starts from, the rater's draft), drafts saved as they
type, skips, what is left, and creating tasks.

* A writing task needs `project.writing_overlap` distinct writers. A slot is held by a
  submission or an unexpired lease of another rater; claims lock the task row (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, the IMMEDIATE transaction on SQLite) and recount under the lock.
* A rater never gets the same task twice; their own expired lease is renewed while the task has
  room, else it lapses (their draft stays: drafts are kept per rater and task until submitted).
* Only the project's raters claim, save drafts, submit, skip and undo (`require_rater`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, exists, func, select
from sqlalchemy.orm import Session, aliased

from app.db import insert_ignoring_conflicts
from app.models import (
    AssignmentStatus,
    Comparison,
    Completion,
    Demonstration,
    Draft,
    Judgment,
    JudgmentSource,
    Project,
    Prompt,
    WritingAssignment,
    WritingKind,
    WritingTask,
)
from app.models.types import utcnow
from app.services.rating.assignment import REMAINING_CAP, Progress
from app.services.rating.common import InvalidJudgment, NotAssigned, require_rater
from app.services.storable import text_problem

MAX_CLAIM_ATTEMPTS = 8


@dataclass(frozen=True)
class WritingView:
    assignment_id: int
    task_id: int
    kind: WritingKind
    messages: list[dict[str, str]]
    start_text: str  # the completion an improve task starts from; "" for write
    draft: str | None  # the rater's saved draft, if any
    lease_expires_at: datetime


_lease = aliased(WritingAssignment)


def _taken(task_id, rater_id):  # type: ignore[no-untyped-def]
    """Submissions plus other raters' unexpired leases of a task (bound parameter `now`)."""
    leases = (
        select(func.count())
        .where(
            _lease.writing_task_id == task_id,
            _lease.status == AssignmentStatus.active,
            _lease.lease_expires_at > bindparam("now"),
            _lease.rater_id != rater_id,
        )
        .scalar_subquery()
    )
    return WritingTask.submission_count + leases


def _has_room(session: Session, project: Project, task_id: int, rater_id: int, now: datetime) -> bool:
    taken = session.execute(
        select(_taken(WritingTask.id, rater_id)).where(WritingTask.id == task_id), {"now": now}
    ).scalar_one()
    return int(taken) < project.writing_overlap


def lock_task(session: Session, task_id: int) -> WritingTask:
    return session.execute(
        select(WritingTask).where(WritingTask.id == task_id).with_for_update()
    ).scalar_one()


def current(
    session: Session, *, project: Project, rater_id: int, kind: WritingKind, now: datetime | None = None
) -> WritingAssignment | None:
    now = now or utcnow()
    return session.scalars(
        select(WritingAssignment)
        .join(WritingTask, WritingTask.id == WritingAssignment.writing_task_id)
        .where(
            WritingAssignment.rater_id == rater_id,
            WritingAssignment.project_id == project.id,
            WritingAssignment.status == AssignmentStatus.active,
            WritingAssignment.lease_expires_at > now,
            WritingTask.kind == kind,
        )
        .order_by(WritingAssignment.id)
        .limit(1)
    ).first()


def _open_tasks(project: Project, rater_id: int, kind: WritingKind):  # type: ignore[no-untyped-def]
    seen = aliased(WritingAssignment)
    return select(WritingTask.id).where(
        WritingTask.project_id == project.id,
        WritingTask.kind == kind,
        WritingTask.submission_count < project.writing_overlap,
        ~exists().where(seen.writing_task_id == WritingTask.id, seen.rater_id == rater_id),
    )


def claim(
    session: Session, *, project: Project, rater_id: int, kind: WritingKind, now: datetime | None = None
) -> WritingAssignment | None:
    """The rater's current task of this kind, or a newly claimed one; None when none is left."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    lease = timedelta(seconds=project.lease_seconds)
    own = session.scalars(
        select(WritingAssignment)
        .join(WritingTask, WritingTask.id == WritingAssignment.writing_task_id)
        .where(
            WritingAssignment.rater_id == rater_id,
            WritingAssignment.project_id == project.id,
            WritingAssignment.status == AssignmentStatus.active,
            WritingTask.kind == kind,
        )
        .order_by(WritingAssignment.id)
    ).all()
    for assignment in own:  # an unexpired lease comes before renewing an expired one
        if assignment.lease_expires_at > now:
            return assignment
    for assignment in own:
        lock_task(session, assignment.writing_task_id)
        if _has_room(session, project, assignment.writing_task_id, rater_id, now):
            assignment.leased_at, assignment.lease_expires_at = now, now + lease
            session.flush()
            return assignment
        assignment.status = AssignmentStatus.lapsed
    session.flush()

    candidates = (
        _open_tasks(project, rater_id, kind)
        .where(_taken(WritingTask.id, rater_id) < project.writing_overlap)
        .order_by(WritingTask.submission_count.desc(), WritingTask.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=WritingTask)
    )
    skipped: list[int] = []
    for _ in range(MAX_CLAIM_ATTEMPTS):
        query = candidates.where(WritingTask.id.not_in(skipped)) if skipped else candidates
        task_id = session.execute(query, {"now": now}).scalar_one_or_none()
        if task_id is None:
            return None
        if not _has_room(session, project, task_id, rater_id, now):
            skipped.append(task_id)
            continue
        assignment = WritingAssignment(
            writing_task_id=task_id, rater_id=rater_id, project_id=project.id,
            status=AssignmentStatus.active, leased_at=now, lease_expires_at=now + lease,
        )  # fmt: skip
        session.add(assignment)
        session.flush()
        return assignment
    return None


def view(session: Session, assignment: WritingAssignment) -> WritingView:
    task = session.get(WritingTask, assignment.writing_task_id)
    assert task is not None
    messages = session.execute(select(Prompt.messages).where(Prompt.id == task.prompt_id)).scalar_one()
    start = ""
    if task.completion_id is not None:
        start = session.execute(
            select(Completion.text).where(Completion.id == task.completion_id)
        ).scalar_one()
    draft = session.execute(
        select(Draft.text).where(Draft.user_id == assignment.rater_id, Draft.writing_task_id == task.id)
    ).scalar_one_or_none()
    return WritingView(
        assignment_id=assignment.id, task_id=task.id, kind=WritingKind(task.kind), messages=messages,
        start_text=start, draft=draft, lease_expires_at=assignment.lease_expires_at,
    )  # fmt: skip


def progress(
    session: Session, *, project: Project, rater_id: int, kind: WritingKind, now: datetime | None = None
) -> Progress:
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    written = (
        select(func.count().filter(Demonstration.created_at >= midnight), func.count())
        .join(WritingTask, WritingTask.id == Demonstration.writing_task_id)
        .where(
            Demonstration.author_id == rater_id,
            Demonstration.project_id == project.id,
            WritingTask.kind == kind,
        )
    )
    done_today, done_total = session.execute(written).one()
    remaining = session.execute(
        select(func.count()).select_from(
            _open_tasks(project, rater_id, kind).limit(REMAINING_CAP + 1).subquery()
        )
    ).scalar_one()
    return Progress(done_today=done_today, done_total=done_total, remaining=remaining)


def has_work(session: Session, *, project: Project, rater_id: int, kind: WritingKind, now: datetime) -> bool:
    return session.execute(select(_open_tasks(project, rater_id, kind).exists())).scalar_one()


def own_assignment(
    session: Session, project: Project, rater_id: int, assignment_id: int
) -> WritingAssignment:
    require_rater(session, project, rater_id)
    assignment = session.get(WritingAssignment, assignment_id)
    if assignment is None or assignment.rater_id != rater_id or assignment.project_id != project.id:
        raise NotAssigned("This writing task is not assigned to you. Reload the page for your current one.")
    return assignment


def save_draft(session: Session, *, project: Project, rater_id: int, assignment_id: int, text: str) -> None:
    """Keeps the rater's text for the task (the latest wins); refused only for text the
    database cannot hold, which the rater is told about."""
    assignment = own_assignment(session, project, rater_id, assignment_id)
    problem = text_problem(text)
    if problem:
        raise InvalidJudgment("draft", problem)
    if len(text) > project.max_answer_chars * 2:
        raise InvalidJudgment("draft", f"is over {project.max_answer_chars * 2:,} characters; not saved")
    task_id = assignment.writing_task_id
    session.execute(
        insert_ignoring_conflicts(session, Draft).values(
            user_id=rater_id, writing_task_id=task_id, text="", updated_at=utcnow()
        )
    )
    draft = session.execute(
        select(Draft).where(Draft.user_id == rater_id, Draft.writing_task_id == task_id).with_for_update()
    ).scalar_one()
    draft.text = text
    draft.updated_at = utcnow()
    session.flush()


def skip(session: Session, *, project: Project, rater_id: int, assignment_id: int) -> None:
    assignment = own_assignment(session, project, rater_id, assignment_id)
    if assignment.status == AssignmentStatus.active:
        assignment.status = AssignmentStatus.skipped
        session.flush()


def add_tasks(
    session: Session, project: Project, *, prompt_ids: Sequence[int] = (), completion_ids: Sequence[int] = ()
) -> int:
    """Write tasks for the prompts and improve tasks for the completions (of this project) that
    have none yet; returns how many were created."""
    created = 0
    existing = select(WritingTask).where(WritingTask.project_id == project.id)
    have_write = {t.prompt_id for t in session.scalars(existing) if t.kind == WritingKind.write}
    for prompt_id in dict.fromkeys(prompt_ids):
        if prompt_id not in have_write:
            session.add(WritingTask(project_id=project.id, prompt_id=prompt_id, kind=WritingKind.write))
            created += 1
    have_improve = {t.completion_id for t in session.scalars(existing) if t.kind == WritingKind.improve}
    rows = session.execute(
        select(Completion.id, Completion.prompt_id)
        .join(Prompt, and_(Prompt.id == Completion.prompt_id, Prompt.project_id == project.id))
        .where(Completion.id.in_(list(dict.fromkeys(completion_ids))))
    ).all()
    for completion_id, prompt_id in rows:
        if completion_id not in have_improve:
            task = WritingTask(project_id=project.id, prompt_id=prompt_id, kind=WritingKind.improve)
            task.completion_id = completion_id
            session.add(task)
            created += 1
    session.flush()
    return created


def add_project_tasks(
    session: Session, project: Project, *, write: bool = False, improve: bool = False
) -> int:
    """Write tasks for every prompt of the project and improve tasks for every completion of its
    prompts (not the texts raters' edits stored) that have none yet; returns how many."""
    prompt_ids = (
        list(session.scalars(select(Prompt.id).where(Prompt.project_id == project.id))) if write else []
    )
    completion_ids: list[int] = []
    if improve:
        edits = (
            select(Comparison.completion_a_id)
            .join(Judgment, Judgment.comparison_id == Comparison.id)
            .where(Comparison.project_id == project.id, Judgment.source == JudgmentSource.edit)
        )
        completion_ids = list(session.scalars(
            select(Completion.id)
            .join(Prompt, Prompt.id == Completion.prompt_id)
            .where(Prompt.project_id == project.id, Completion.id.not_in(edits))
        ))  # fmt: skip
    return add_tasks(session, project, prompt_ids=prompt_ids, completion_ids=completion_ids)
