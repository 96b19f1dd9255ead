"""The judgments raters return: stored once per comparison and rater, adaptive overlap widened
on split votes, skips, and undo.

* Judgments are unique per (comparison, rater): a double-clicked or retried submit returns the
  stored judgment instead of writing a second one.
* A late submit (lease expired) is kept when the pair still has a free slot; otherwise it is
  refused with `PairFilled`.
* The rater's pick (-2..2, negative = left better) is translated to A/B through the assignment's
  stored left/right order, so a stored choice always names the right completion.
* "Both bad" alone (no pick) is a complete answer: it is stored as a tie (strength 0) marked
  both bad, on any scale. The preference rules drop both-bad judgments unless asked to keep them,
  and then a tie is a vote for neither side, so it never yields a preferred response.
* Adaptive overlap: when a regular pair's last needed vote arrives and the votes are split (the
  largest group of identical choices holds less than ``project.split_threshold`` of them),
  ``extra_raters`` grows by one, up to ``project.max_overlap`` raters in all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from app.db import insert_ignoring_conflicts, is_postgres
from app.models import (
    Assignment,
    AssignmentStatus,
    Choice,
    Comparison,
    ComparisonKind,
    Judgment,
    JudgmentSource,
    Project,
)
from app.models.types import utcnow
from app.services.rating.common import (
    SCALE_PICKS,
    InvalidJudgment,
    JudgmentInput,
    NotAssigned,
    PairFilled,
    has_room,
    known_no_lease,
    lock_comparison,
    max_overlap,
    note_no_lease,
    require_rater,
)
from app.services.rating.store import CLOSE_LEASE, MAX_TIME_SPENT_MS, STORE_ON_LEASE, judgment_values

MAX_RATIONALE_CHARS = 10_000


def pick_to_choice(pick: int | None, *, a_on_left: bool) -> tuple[Choice, int]:
    """Map a displayed pick (negative: left better) to the stored (choice, strength); no pick
    ("both bad" alone) is stored as a tie."""
    if pick is None or pick == 0:
        return Choice.tie, 0
    left_better = pick < 0
    a_better = left_better == a_on_left
    return (Choice.A if a_better else Choice.B), abs(pick)


def choice_to_pick(choice: Choice, strength: int, *, a_on_left: bool) -> int:
    if choice == Choice.tie:
        return 0
    left_better = (choice == Choice.A) == a_on_left
    return -strength if left_better else strength


def _validate(project: Project, data: JudgmentInput) -> tuple[list[str], str]:
    if data.pick is None and not data.both_bad:
        raise InvalidJudgment("pick", "choose which response is better, or mark both as bad")
    if data.pick is not None and data.pick not in SCALE_PICKS[project.scale]:
        allowed = ", ".join(str(p) for p in SCALE_PICKS[project.scale])
        raise InvalidJudgment("pick", f"{data.pick!r} is not on this project's scale ({allowed})")
    unknown = [flag for flag in data.flags if flag not in project.flags]
    if unknown:
        raise InvalidJudgment("flags", f"unknown flag {unknown[0]!r}")
    rationale = data.rationale.strip()
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise InvalidJudgment("rationale", f"at most {MAX_RATIONALE_CHARS} characters")
    if project.rationale_required and not rationale:
        raise InvalidJudgment("rationale", "this project asks for a short rationale")
    return sorted(set(data.flags), key=project.flags.index), rationale


def _insert_ignoring_duplicate(session: Session, values: dict[str, object]) -> Judgment | None:
    """The stored judgment (the INSERT's RETURNING row, no second read), or None when the rater's
    judgment of this comparison exists already."""
    statement = insert_ignoring_conflicts(
        session, Judgment, index_elements=["comparison_id", "rater_id"]
    ).returning(*Judgment.__table__.c)
    return session.scalars(select(Judgment).from_statement(statement), values).one_or_none()


def _stored_judgment(session: Session, comparison_id: int, rater_id: int) -> Judgment:
    return session.scalars(
        select(Judgment).where(Judgment.comparison_id == comparison_id, Judgment.rater_id == rater_id)
    ).one()


def submit_judgment(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    data: JudgmentInput,
    now: datetime | None = None,
) -> tuple[Judgment, bool]:
    """Store a judgment; returns (judgment, created). A repeat returns the stored one.

    An answer on the rater's unexpired lease takes three statements: the lease closed
    (`store.CLOSE_LEASE`), the judgment inserted, the comparison's count raised (a fourth when the
    pair's last vote may widen it). Anything else (a repeat, a late or foreign assignment, an
    invalid answer) reads the assignment first and is decided as before.
    """
    require_rater(session, project, rater_id)
    now = now or utcnow()
    try:
        flags, rationale = _validate(project, data)
        problem = None
    except InvalidJudgment as invalid:
        problem = invalid
    closed = None
    if problem is None and is_postgres(session):
        stored = _store_on_lease(session, project, rater_id, data, flags, rationale, now)
        if stored is not None:
            return stored
    elif problem is None:
        lease = {"lease": data.assignment_id, "rater": rater_id, "project": project.id, "now": now}
        closed = session.execute(CLOSE_LEASE, lease).one_or_none()
    if closed is not None:
        comparison_id, a_on_left, leased_at = closed
    else:
        assignment = session.get(Assignment, data.assignment_id)
        if assignment is None or assignment.rater_id != rater_id or assignment.project_id != project.id:
            raise NotAssigned("This pair was never assigned to you.")
        if assignment.status == AssignmentStatus.done:  # a repeat: return what is stored
            return _stored_judgment(session, assignment.comparison_id, rater_id), False
        if problem is not None:
            raise problem
        comparison_id, a_on_left, leased_at = (
            assignment.comparison_id,
            assignment.a_on_left,
            assignment.leased_at,
        )
        if assignment.status != AssignmentStatus.active or assignment.lease_expires_at <= now:
            # A late submit: keep it only if the pair still has a free slot.
            lock_comparison(session, comparison_id)
            if not has_room(session, project, comparison_id, now, rater_id):
                assignment.status = AssignmentStatus.lapsed
                session.flush()
                raise PairFilled(
                    "Your reservation of this pair expired and other raters have since completed it, "
                    "so this answer was not stored. Here is your next pair."
                )
        assignment.status = AssignmentStatus.done

    choice, strength = pick_to_choice(data.pick, a_on_left=a_on_left)
    elapsed = int((now - leased_at).total_seconds() * 1000)
    judgment = _insert_ignoring_duplicate(
        session,
        {
            "comparison_id": comparison_id,
            "rater_id": rater_id,
            "project_id": project.id,
            "assignment_id": data.assignment_id,
            "choice": choice.value,
            "strength": strength,
            "both_bad": data.both_bad,
            "flags": flags,
            "rationale": rationale,
            "time_spent_ms": max(0, min(elapsed, MAX_TIME_SPENT_MS)),
            "a_on_left": a_on_left,
            "source": JudgmentSource.human.value,
            "created_at": now,
        },
    )
    if judgment is None:  # a concurrent duplicate won the race: return its row
        session.expire_all()
        return _stored_judgment(session, comparison_id, rater_id), False
    # The update locks the comparison row until commit: the values it returns are current, and
    # concurrent submits on the same pair decide on extra raters one after the other.
    count, extra, kind = session.execute(
        update(Comparison)
        .where(Comparison.id == comparison_id)
        .values(judgment_count=Comparison.judgment_count + 1)
        .returning(Comparison.judgment_count, Comparison.extra_raters, Comparison.kind)
    ).one()
    if kind == ComparisonKind.regular:
        _widen_if_split(session, project, comparison_id, count, extra)
    session.flush()
    return judgment, True


def _store_on_lease(
    session: Session,
    project: Project,
    rater_id: int,
    data: JudgmentInput,
    flags: list[str],
    rationale: str,
    now: datetime,
) -> tuple[Judgment, bool] | None:
    """PostgreSQL: the judgment on the rater's unexpired lease in one statement (`STORE_ON_LEASE`);
    None when there is no such lease (nothing was written)."""
    choice_a_left, strength = pick_to_choice(data.pick, a_on_left=True)
    choice_b_left, _ = pick_to_choice(data.pick, a_on_left=False)
    params = {
        "lease": data.assignment_id, "rater": rater_id, "project": project.id, "now": now,
        "choice_a_left": choice_a_left, "choice_b_left": choice_b_left, "picked_strength": strength,
        "picked_both_bad": data.both_bad, "picked_flags": flags, "picked_rationale": rationale,
    }  # fmt: skip
    row = session.execute(STORE_ON_LEASE, params).one_or_none()
    if row is None:
        return None
    values = judgment_values(row)
    if values is None:  # a concurrent duplicate won the race: return its row
        session.expire_all()
        return _stored_judgment(session, row.closed_comparison_id, rater_id), False
    judgment = Judgment(**values)
    make_transient_to_detached(judgment)
    session.add(judgment)
    if row.other_leases == 0:
        note_no_lease(session, project.id, rater_id)
    if row.kind == ComparisonKind.regular:
        _widen_if_split(session, project, row.closed_comparison_id, row.judgment_count, row.extra_raters)
    return judgment, True


_VOTES = (
    select(Judgment.choice, func.count())
    .where(Judgment.comparison_id == bindparam("comparison_id"), Judgment.source == JudgmentSource.human)
    .group_by(Judgment.choice)
)


def votes_split(choices: dict[str, int], threshold: float) -> bool:
    """True when the largest group of identical choices holds less than `threshold` of the votes."""
    total = sum(choices.values())
    return total > 0 and max(choices.values()) / total < threshold - 1e-9


def _widen_if_split(session: Session, project: Project, comparison_id: int, count: int, extra: int) -> None:
    needed = project.overlap + extra
    if count < needed or needed >= max_overlap(project):
        return
    tally = {str(choice): n for choice, n in session.execute(_VOTES, {"comparison_id": comparison_id})}
    if votes_split(tally, project.split_threshold):
        session.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id)
            .values(extra_raters=Comparison.extra_raters + 1)
        )


def skip(session: Session, *, project: Project, rater_id: int, assignment_id: int) -> None:
    """Pass on a pair: its slot returns to the pool and this rater will not see it again."""
    require_rater(session, project, rater_id)
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.rater_id != rater_id or assignment.project_id != project.id:
        raise NotAssigned("This pair was never assigned to you.")
    if assignment.status == AssignmentStatus.active:
        assignment.status = AssignmentStatus.skipped
        session.flush()


def undo_last(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    window: timedelta,
    now: datetime | None = None,
) -> tuple[Assignment, JudgmentInput] | None:
    """Withdraw the rater's latest judgment (within `window`) and lease the pair to them again.

    Returns the re-opened assignment and the withdrawn answer (to pre-fill the form), or None
    when there is nothing recent to undo.
    """
    require_rater(session, project, rater_id)
    known_no_lease(session, project.id, rater_id)  # the lease re-opened below makes a note wrong
    now = now or utcnow()
    judgment = session.scalars(
        select(Judgment)
        .where(
            Judgment.rater_id == rater_id,
            Judgment.project_id == project.id,
            Judgment.source == JudgmentSource.human,
            Judgment.created_at > now - window,
        )
        .order_by(Judgment.created_at.desc(), Judgment.id.desc())
        .limit(1)
    ).one_or_none()
    if judgment is None:
        return None
    lock_comparison(session, judgment.comparison_id)
    assignment = session.scalars(
        select(Assignment).where(
            and_(
                Assignment.comparison_id == judgment.comparison_id,
                Assignment.rater_id == rater_id,
            )
        )
    ).one()
    pick: int | None = choice_to_pick(judgment.choice, judgment.strength, a_on_left=assignment.a_on_left)
    if judgment.both_bad and pick == 0 and 0 not in SCALE_PICKS[project.scale]:
        pick = None  # "both bad" alone on a scale without a tie: nothing was picked
    previous = JudgmentInput(
        assignment_id=assignment.id,
        pick=pick,
        both_bad=judgment.both_bad,
        flags=tuple(judgment.flags),
        rationale=judgment.rationale,
    )
    session.delete(judgment)
    session.execute(
        update(Comparison)
        .where(Comparison.id == judgment.comparison_id)
        .values(judgment_count=Comparison.judgment_count - 1)
    )
    # The judgment's slot becomes this rater's lease again: the pair is shown as it was.
    assignment.status = AssignmentStatus.active
    assignment.leased_at = now
    assignment.lease_expires_at = now + timedelta(seconds=project.lease_seconds)
    session.flush()
    return assignment, previous
