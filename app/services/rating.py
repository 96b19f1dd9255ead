"""Assignment of pairs to raters, and the judgments they return.

The rules:

* A comparison needs ``project.overlap`` distinct raters. A slot is held either by a judgment or
  by an *active lease* (an assignment shown to a rater whose ``lease_expires_at`` is in the
  future). A comparison is offered only while judgments + active leases < overlap.
* A rater never gets the same comparison twice (assignments are unique per comparison and rater);
  a rater who comes back while holding an unexpired lease gets the same pair again.
* Leases expire, so abandoned pairs return to the pool. A late submit (lease expired) is kept when
  the pair still has a free slot; otherwise it is refused with `PairFilled`.
* On PostgreSQL, claiming locks the comparison row with ``FOR UPDATE SKIP LOCKED``: concurrent
  raters skip each other's candidate instead of queueing on it, and the slot count is re-read
  under the lock, so a pair can never be handed out beyond its overlap. On SQLite every
  transaction begins IMMEDIATE (app/db.py), which serialises claims.
* Judgments are unique per (comparison, rater): a double-clicked or retried submit returns the
  stored judgment instead of writing a second one.
* Left/right order is drawn per assignment and stored; the rater's pick (-2..2, negative = left
  better) is translated to A/B through it, so a stored choice always names the right completion.
* "Both bad" alone (no pick) is a complete answer: it is stored as a tie (strength 0) marked
  both bad, on any scale. The preference rules drop both-bad judgments unless asked to keep them,
  and then a tie is a vote for neither side, so it never yields a preferred response.
* Gold pairs (a known answer) are mixed in: with probability ``project.gold_rate`` a claim first
  draws, at random, a gold pair the rater has not seen. Gold pairs are shown exactly like the
  others, are never limited by the overlap (every rater may meet each once) and are offered only
  through that draw.
* Only the project's raters (app/services/membership.py) claim, submit, skip and undo: each of
  these checks it again, so a rater removed from a members-only project while holding a pair is
  refused (404, as for a project that does not exist) even with the old assignment's id.
* Adaptive overlap: a regular pair needs ``project.overlap + comparison.extra_raters`` raters.
  When its last needed vote arrives and the votes are split (the largest group of identical
  choices holds less than ``project.split_threshold`` of them), ``extra_raters`` grows by one,
  up to ``project.max_overlap`` raters in all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from app.db import insert_ignoring_conflicts
from app.models import (
    Assignment,
    AssignmentStatus,
    Choice,
    Comparison,
    ComparisonKind,
    Completion,
    Judgment,
    JudgmentSource,
    Project,
    Prompt,
    Scale,
)
from app.models.types import utcnow
from app.services.membership import may_rate

# Candidate pairs to try per request before concluding that nothing is free right now.
MAX_CLAIM_ATTEMPTS = 8
MAX_RATIONALE_CHARS = 10_000
MAX_TIME_SPENT_MS = 60 * 60 * 1000
# "Left for you" is counted up to this many pairs; beyond, the workbench shows "1000+".
REMAINING_CAP = 1000

SCALE_PICKS: dict[Scale, tuple[int, ...]] = {
    Scale.five: (-2, -1, 0, 1, 2),
    Scale.three: (-1, 0, 1),
    Scale.two: (-1, 1),
}
PICK_LABELS = {
    -2: "A is much better",
    -1: "A is better",
    0: "Tie",
    1: "B is better",
    2: "B is much better",
}


class RatingError(Exception):
    """A rater-facing problem; `str()` is shown to the rater as it is."""

    status_code = 400


class NotAssigned(RatingError):
    status_code = 404


class NotAMember(RatingError):
    """The rater may not rate in this project (any more): answered like a missing project."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("No active project with this name.")


def _require_rater(session: Session, project: Project, rater_id: int) -> None:
    if not may_rate(session, project, rater_id):
        raise NotAMember()


class PairFilled(RatingError):
    status_code = 409


class InvalidJudgment(RatingError):
    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class PairView:
    """What the workbench shows: the sides are already in display order."""

    assignment_id: int
    comparison_id: int
    messages: list[dict[str, str]]
    left_text: str
    right_text: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Progress:
    done_today: int
    done_total: int
    remaining: int  # at most REMAINING_CAP + 1: counting further would scan the whole project

    @property
    def remaining_label(self) -> str:
        return f"{REMAINING_CAP}+" if self.remaining > REMAINING_CAP else str(self.remaining)


@dataclass(frozen=True)
class JudgmentInput:
    """A rater's answer; `pick` is None only for "both bad" given alone."""

    assignment_id: int
    pick: int | None
    both_bad: bool = False
    flags: tuple[str, ...] = ()
    rationale: str = ""


# --- assignment -----------------------------------------------------------------------------


_lease = aliased(Assignment)
_seen_by_rater = aliased(Assignment)


def _active_leases(comparison_id, *, except_rater: bool = False):  # type: ignore[no-untyped-def]
    """Unexpired leases of a comparison (bound parameters `now`, and `rater_id` to exclude)."""
    query = select(func.count()).where(
        _lease.comparison_id == comparison_id,
        _lease.status == AssignmentStatus.active,
        _lease.lease_expires_at > bindparam("now"),
    )
    if except_rater:
        query = query.where(_lease.rater_id != bindparam("rater_id"))
    return query.scalar_subquery()


# Judgments plus other raters' active leases of one comparison, its extra raters and its kind.
_SLOTS_TAKEN = select(
    Comparison.judgment_count + _active_leases(bindparam("comparison_id"), except_rater=True),
    Comparison.extra_raters,
    Comparison.kind,
).where(Comparison.id == bindparam("comparison_id"))

# The next free pair for a rater: not seen by them, judgments + active leases under the overlap.
_CANDIDATES = (
    select(Comparison.id)
    .where(
        Comparison.project_id == bindparam("project_id"),
        # The index range: no pair needs more than the project's maximum overlap.
        Comparison.judgment_count < bindparam("max_overlap"),
        Comparison.kind == ComparisonKind.regular,
        ~exists().where(
            _seen_by_rater.comparison_id == Comparison.id,
            _seen_by_rater.rater_id == bindparam("rater_id"),
        ),
        Comparison.judgment_count + _active_leases(Comparison.id)
        < bindparam("overlap") + Comparison.extra_raters,
    )
    # Finish pairs that already have votes before opening new ones, newest first (fresh
    # generations reach raters first). Matches ix_comparisons_open read backwards.
    .order_by(Comparison.judgment_count.desc(), Comparison.id.desc())
    .limit(1)
    .with_for_update(skip_locked=True, of=Comparison)
)


# A gold pair the rater has not seen, drawn at random (gold sets are small).
_GOLD_CANDIDATE = (
    select(Comparison.id)
    .where(
        Comparison.project_id == bindparam("project_id"),
        Comparison.kind == ComparisonKind.gold,
        ~exists().where(
            _seen_by_rater.comparison_id == Comparison.id,
            _seen_by_rater.rater_id == bindparam("rater_id"),
        ),
    )
    .order_by(func.random())
    .limit(1)
)


def max_overlap(project: Project) -> int:
    """The most raters a regular pair of this project can need (adaptive overlap included)."""
    return max(project.overlap, project.max_overlap or 0)


def _has_room(session: Session, project: Project, comparison_id: int, now: datetime, rater_id: int) -> bool:
    """Whether the pair can take this rater's vote, read fresh (call with the row locked)."""
    params = {"comparison_id": comparison_id, "now": now, "rater_id": rater_id}
    taken, extra, kind = session.execute(_SLOTS_TAKEN, params).one()
    if kind == ComparisonKind.gold:
        return True
    return int(taken) < project.overlap + int(extra)


def _lock_comparison(session: Session, comparison_id: int) -> None:
    session.execute(
        select(Comparison.id).where(Comparison.id == comparison_id).with_for_update()
    ).scalar_one()


def claim_next(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> Assignment | None:
    """The rater's current pair, or a newly claimed one; None when nothing is left for them."""
    _require_rater(session, project, rater_id)
    now = now or utcnow()
    lease = timedelta(seconds=project.lease_seconds)

    own = session.scalars(
        select(Assignment)
        .where(
            Assignment.rater_id == rater_id,
            Assignment.project_id == project.id,
            Assignment.status == AssignmentStatus.active,
        )
        .order_by(Assignment.id)
    ).all()
    for assignment in own:
        if assignment.lease_expires_at > now:
            return assignment
        # An expired lease of this rater's: renew it if the pair still has room.
        _lock_comparison(session, assignment.comparison_id)
        if _has_room(session, project, assignment.comparison_id, now, rater_id):
            assignment.leased_at = now
            assignment.lease_expires_at = now + lease
            session.flush()
            return assignment
        assignment.status = AssignmentStatus.lapsed
    session.flush()

    def assign(comparison_id: int) -> Assignment:
        assignment = Assignment(
            comparison_id=comparison_id,
            rater_id=rater_id,
            project_id=project.id,
            a_on_left=random.random() < 0.5,
            status=AssignmentStatus.active,
            leased_at=now,
            lease_expires_at=now + lease,
        )
        session.add(assignment)
        session.flush()
        return assignment

    if project.gold_rate > 0 and random.random() < project.gold_rate:
        gold_id = session.execute(
            _GOLD_CANDIDATE, {"project_id": project.id, "rater_id": rater_id}
        ).scalar_one_or_none()
        if gold_id is not None:
            return assign(gold_id)

    params = {
        "project_id": project.id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
        "rater_id": rater_id,
        "now": now,
    }
    skipped: list[int] = []
    for _ in range(MAX_CLAIM_ATTEMPTS):
        query = _CANDIDATES.where(Comparison.id.not_in(skipped)) if skipped else _CANDIDATES
        comparison_id = session.execute(query, params).scalar_one_or_none()
        if comparison_id is None:
            return None
        # The candidate query's snapshot may predate another rater's claim: recount under lock.
        if not _has_room(session, project, comparison_id, now, rater_id):
            skipped.append(comparison_id)
            continue
        return assign(comparison_id)
    return None


# The hot-path statements are built once, with bound parameters: building a statement costs
# more CPU than PostgreSQL spends answering it.
_comp_a, _comp_b = aliased(Completion), aliased(Completion)
_PAIR_TEXTS = (
    select(Prompt.messages, _comp_a.text, _comp_b.text)
    .select_from(Comparison)
    .join(Prompt, Prompt.id == Comparison.prompt_id)
    .join(_comp_a, _comp_a.id == Comparison.completion_a_id)
    .join(_comp_b, _comp_b.id == Comparison.completion_b_id)
    .where(Comparison.id == bindparam("comparison_id"))
)


def pair_view(session: Session, assignment: Assignment) -> PairView:
    messages, text_a, text_b = session.execute(_PAIR_TEXTS, {"comparison_id": assignment.comparison_id}).one()
    left, right = (text_a, text_b) if assignment.a_on_left else (text_b, text_a)
    return PairView(
        assignment_id=assignment.id,
        comparison_id=assignment.comparison_id,
        messages=messages,
        left_text=left,
        right_text=right,
        lease_expires_at=assignment.lease_expires_at,
    )


_DONE_COUNTS = select(
    func.count().filter(Judgment.created_at >= bindparam("midnight")),
    func.count(),
).where(Judgment.rater_id == bindparam("rater_id"), Judgment.project_id == bindparam("project_id"))
_seen = aliased(Assignment)
_REMAINING = select(func.count()).select_from(
    select(Comparison.id)
    .where(
        Comparison.project_id == bindparam("project_id"),
        Comparison.judgment_count < bindparam("max_overlap"),
        Comparison.kind == ComparisonKind.regular,
        Comparison.judgment_count < bindparam("overlap") + Comparison.extra_raters,
        ~exists().where(
            _seen.comparison_id == Comparison.id,
            _seen.rater_id == bindparam("rater_id"),
            _seen.status != AssignmentStatus.active,
        ),
    )
    .limit(REMAINING_CAP + 1)
    .subquery()
)


def progress(session: Session, *, project: Project, rater_id: int, now: datetime | None = None) -> Progress:
    """Judgments today (UTC) and in total, and pairs this rater could still be given."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "project_id": project.id,
        "rater_id": rater_id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
    }
    done_today, done_total = session.execute(_DONE_COUNTS, {**params, "midnight": midnight}).one()
    remaining = session.execute(_REMAINING, params).scalar_one()
    return Progress(done_today=done_today, done_total=done_total, remaining=remaining)


# --- judgments ------------------------------------------------------------------------------


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


def _insert_ignoring_duplicate(session: Session, values: dict[str, object]) -> int | None:
    statement = (
        insert_ignoring_conflicts(session, Judgment, index_elements=["comparison_id", "rater_id"])
        .values(**values)
        .returning(Judgment.id)
    )
    return session.execute(statement).scalar_one_or_none()


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
    """Store a judgment; returns (judgment, created). A repeat returns the stored one."""
    _require_rater(session, project, rater_id)
    now = now or utcnow()
    assignment = session.get(Assignment, data.assignment_id)
    if assignment is None or assignment.rater_id != rater_id or assignment.project_id != project.id:
        raise NotAssigned("This pair was never assigned to you.")

    if assignment.status == AssignmentStatus.done:  # a repeat: return what is stored
        return _stored_judgment(session, assignment.comparison_id, rater_id), False

    flags, rationale = _validate(project, data)
    if assignment.status != AssignmentStatus.active or assignment.lease_expires_at <= now:
        # A late submit: keep it only if the pair still has a free slot.
        _lock_comparison(session, assignment.comparison_id)
        if not _has_room(session, project, assignment.comparison_id, now, rater_id):
            assignment.status = AssignmentStatus.lapsed
            session.flush()
            raise PairFilled(
                "Your reservation of this pair expired and other raters have since completed it, "
                "so this answer was not stored. Here is your next pair."
            )

    choice, strength = pick_to_choice(data.pick, a_on_left=assignment.a_on_left)
    elapsed = int((now - assignment.leased_at).total_seconds() * 1000)
    judgment_id = _insert_ignoring_duplicate(
        session,
        {
            "comparison_id": assignment.comparison_id,
            "rater_id": rater_id,
            "project_id": project.id,
            "assignment_id": assignment.id,
            "choice": choice.value,
            "strength": strength,
            "both_bad": data.both_bad,
            "flags": flags,
            "rationale": rationale,
            "time_spent_ms": max(0, min(elapsed, MAX_TIME_SPENT_MS)),
            "a_on_left": assignment.a_on_left,
            "source": JudgmentSource.human.value,
            "created_at": now,
        },
    )
    if judgment_id is None:  # a concurrent duplicate won the race: return its row
        session.expire_all()
        return _stored_judgment(session, assignment.comparison_id, rater_id), False
    assignment.status = AssignmentStatus.done
    # The update locks the comparison row until commit: the values it returns are current, and
    # concurrent submits on the same pair decide on extra raters one after the other.
    count, extra, kind = session.execute(
        update(Comparison)
        .where(Comparison.id == assignment.comparison_id)
        .values(judgment_count=Comparison.judgment_count + 1)
        .returning(Comparison.judgment_count, Comparison.extra_raters, Comparison.kind)
    ).one()
    if kind == ComparisonKind.regular:
        _widen_if_split(session, project, assignment.comparison_id, count, extra)
    session.flush()
    judgment = session.get(Judgment, judgment_id)
    assert judgment is not None
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
    _require_rater(session, project, rater_id)
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
    _require_rater(session, project, rater_id)
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
    _lock_comparison(session, judgment.comparison_id)
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
