"""Assignment and judgments, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Assignment, AssignmentStatus, Choice, Comparison, Judgment, Scale
from app.models.types import utcnow
from app.services import rating
from app.services.rating import JudgmentInput
from tests.utils.factories import make_pair, make_project, make_user


def _judgments(session: Session, comparison_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Judgment).where(Judgment.comparison_id == comparison_id)
    )


def test_claim_keeps_the_current_pair_until_judged(session: Session) -> None:
    project = make_project(session, overlap=1)
    make_pair(session, project, "p1", "a1", "b1")
    make_pair(session, project, "p2", "a2", "b2")
    rater = make_user(session, "r1")
    first = rating.claim_next(session, project=project, rater_id=rater.id)
    again = rating.claim_next(session, project=project, rater_id=rater.id)
    assert first is not None and again is not None and first.id == again.id
    rating.submit_judgment(session, project=project, rater_id=rater.id, data=JudgmentInput(first.id, pick=-1))
    second = rating.claim_next(session, project=project, rater_id=rater.id)
    assert second is not None and second.comparison_id != first.comparison_id


def test_overlap_distinct_raters_and_never_twice(session: Session) -> None:
    project = make_project(session, overlap=2)
    pair = make_pair(session, project, "p", "a", "b")
    raters = [make_user(session, f"r{i}") for i in range(3)]
    got = [rating.claim_next(session, project=project, rater_id=r.id) for r in raters]
    assert got[0] is not None and got[1] is not None
    assert got[2] is None, "a third rater must not get a pair whose two slots are leased"
    for rater, assignment in zip(raters[:2], got[:2], strict=True):
        rating.submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=0)
        )
    assert _judgments(session, pair.id) == 2
    assert rating.claim_next(session, project=project, rater_id=raters[0].id) is None
    assert rating.claim_next(session, project=project, rater_id=raters[2].id) is None


def test_expired_lease_returns_the_pair_and_late_submit_rules(session: Session) -> None:
    project = make_project(session, overlap=1, lease_seconds=60)
    pair = make_pair(session, project, "p", "a", "b")
    slow, fast = make_user(session, "slow"), make_user(session, "fast")
    now = utcnow()
    held = rating.claim_next(session, project=project, rater_id=slow.id, now=now)
    assert held is not None
    assert rating.claim_next(session, project=project, rater_id=fast.id, now=now) is None

    later = now + timedelta(seconds=61)
    taken = rating.claim_next(session, project=project, rater_id=fast.id, now=later)
    assert taken is not None and taken.comparison_id == pair.id
    # The slow rater's late answer: the pair is leased to someone else and full.
    with pytest.raises(rating.PairFilled):
        rating.submit_judgment(
            session, project=project, rater_id=slow.id, data=JudgmentInput(held.id, pick=1), now=later
        )
    rating.submit_judgment(
        session, project=project, rater_id=fast.id, data=JudgmentInput(taken.id, pick=1), now=later
    )
    assert _judgments(session, pair.id) == 1


def test_late_submit_is_kept_when_the_pair_has_room(session: Session) -> None:
    project = make_project(session, overlap=1, lease_seconds=60)
    pair = make_pair(session, project, "p", "a", "b")
    rater = make_user(session, "r")
    now = utcnow()
    held = rating.claim_next(session, project=project, rater_id=rater.id, now=now)
    judgment, created = rating.submit_judgment(
        session,
        project=project,
        rater_id=rater.id,
        data=JudgmentInput(held.id, pick=-2),
        now=now + timedelta(hours=2),
    )
    assert created and judgment.strength == 2
    assert _judgments(session, pair.id) == 1


@pytest.mark.parametrize("a_on_left", [True, False])
def test_stored_choice_names_the_right_completion(session: Session, a_on_left: bool) -> None:
    project = make_project(session, overlap=1)
    make_pair(session, project, "p", "alpha", "beta")
    rater = make_user(session, "r")
    assignment = rating.claim_next(session, project=project, rater_id=rater.id)
    assignment.a_on_left = a_on_left
    session.flush()
    view = rating.pair_view(session, assignment)
    assert (view.left_text, view.right_text) == (("alpha", "beta") if a_on_left else ("beta", "alpha"))
    judgment, _ = rating.submit_judgment(
        session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=-2)
    )  # "left is much better"
    assert judgment.choice == (Choice.A if a_on_left else Choice.B)
    assert judgment.strength == 2 and judgment.a_on_left is a_on_left


def test_repeated_submit_stores_one_judgment(session: Session) -> None:
    project = make_project(session, overlap=1)
    pair = make_pair(session, project, "p", "a", "b")
    rater = make_user(session, "r")
    assignment = rating.claim_next(session, project=project, rater_id=rater.id)
    data = JudgmentInput(assignment.id, pick=1, rationale="B is right")
    first, created_first = rating.submit_judgment(session, project=project, rater_id=rater.id, data=data)
    second, created_second = rating.submit_judgment(
        session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=-1)
    )
    assert created_first and not created_second
    assert second.id == first.id and second.rationale == "B is right"
    assert _judgments(session, pair.id) == 1
    assert session.get(Comparison, pair.id).judgment_count == 1


def test_invalid_submits_are_refused_with_the_field(session: Session) -> None:
    project = make_project(session, overlap=1, scale=Scale.three, flags=["harmful"])
    make_pair(session, project, "p", "a", "b")
    rater, other = make_user(session, "r"), make_user(session, "other")
    assignment = rating.claim_next(session, project=project, rater_id=rater.id)
    with pytest.raises(rating.NotAssigned):
        rating.submit_judgment(
            session, project=project, rater_id=other.id, data=JudgmentInput(assignment.id, pick=0)
        )
    with pytest.raises(rating.NotAssigned):
        rating.submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(999_999, pick=0)
        )
    with pytest.raises(rating.InvalidJudgment) as bad_pick:
        rating.submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=2)
        )
    assert bad_pick.value.field == "pick"
    with pytest.raises(rating.InvalidJudgment) as bad_flag:
        rating.submit_judgment(
            session,
            project=project,
            rater_id=rater.id,
            data=JudgmentInput(assignment.id, pick=1, flags=("boring",)),
        )
    assert bad_flag.value.field == "flags"
    project.rationale_required = True
    with pytest.raises(rating.InvalidJudgment) as no_reason:
        rating.submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1)
        )
    assert no_reason.value.field == "rationale"
    assert session.scalar(select(func.count()).select_from(Judgment)) == 0


def test_skip_releases_the_slot_and_is_not_shown_again(session: Session) -> None:
    project = make_project(session, overlap=1)
    pair = make_pair(session, project, "p", "a", "b")
    skipper, other = make_user(session, "skipper"), make_user(session, "other")
    assignment = rating.claim_next(session, project=project, rater_id=skipper.id)
    rating.skip(session, project=project, rater_id=skipper.id, assignment_id=assignment.id)
    assert rating.claim_next(session, project=project, rater_id=skipper.id) is None
    taken = rating.claim_next(session, project=project, rater_id=other.id)
    assert taken is not None and taken.comparison_id == pair.id


def test_undo_withdraws_the_last_judgment_and_reopens_the_pair(session: Session) -> None:
    project = make_project(session, overlap=1, flags=["harmful"])
    make_pair(session, project, "p1", "a1", "b1")
    make_pair(session, project, "p2", "a2", "b2")
    rater = make_user(session, "r")
    first = rating.claim_next(session, project=project, rater_id=rater.id)
    rating.submit_judgment(
        session,
        project=project,
        rater_id=rater.id,
        data=JudgmentInput(first.id, pick=2, flags=("harmful",), rationale="why"),
    )
    undone = rating.undo_last(session, project=project, rater_id=rater.id, window=timedelta(minutes=5))
    assert undone is not None
    assignment, previous = undone
    assert assignment.id == first.id and assignment.status == AssignmentStatus.active
    assert previous.pick == 2 and previous.flags == ("harmful",) and previous.rationale == "why"
    assert session.scalar(select(func.count()).select_from(Judgment)) == 0
    assert session.get(Comparison, first.comparison_id).judgment_count == 0
    # Resubmitting the reopened pair works, with a different answer.
    judgment, created = rating.submit_judgment(
        session, project=project, rater_id=rater.id, data=JudgmentInput(first.id, pick=0)
    )
    assert created and judgment.choice == Choice.tie
    # Nothing older than the window can be undone.
    assert (
        rating.undo_last(
            session,
            project=project,
            rater_id=rater.id,
            window=timedelta(minutes=5),
            now=utcnow() + timedelta(minutes=10),
        )
        is None
    )


def test_progress_counts(session: Session) -> None:
    project = make_project(session, overlap=1)
    for i in range(3):
        make_pair(session, project, f"p{i}", f"a{i}", f"b{i}")
    rater = make_user(session, "r")
    assert rating.progress(session, project=project, rater_id=rater.id).remaining == 3
    assignment = rating.claim_next(session, project=project, rater_id=rater.id)
    rating.submit_judgment(
        session, project=project, rater_id=rater.id, data=JudgmentInput(assignment.id, pick=1)
    )
    progress = rating.progress(session, project=project, rater_id=rater.id)
    assert (progress.done_today, progress.done_total, progress.remaining) == (1, 1, 2)
    assert session.scalar(select(func.count()).select_from(Assignment)) == 1


def test_both_bad_alone_is_a_complete_answer_stored_as_a_tie(session: Session) -> None:
    """'Both bad' with no pick is stored as a tie (strength 0) marked both bad, on any scale; the
    preference rules drop it by default, and when both-bad judgments are kept it is a vote for
    neither side: it never makes a preferred response."""
    from app.services.preferences.rows import preference_rows
    from app.services.preferences.rules import PreferenceStats

    project = make_project(session, overlap=2, scale=Scale.two)
    pair = make_pair(session, project, "p", "a", "b")
    rater, other = make_user(session, "r"), make_user(session, "other")
    mine = rating.claim_next(session, project=project, rater_id=rater.id)
    with pytest.raises(rating.InvalidJudgment) as nothing:
        rating.submit_judgment(
            session, project=project, rater_id=rater.id, data=JudgmentInput(mine.id, pick=None)
        )
    assert nothing.value.field == "pick"
    judgment, created = rating.submit_judgment(
        session, project=project, rater_id=rater.id, data=JudgmentInput(mine.id, pick=None, both_bad=True)
    )
    assert created and (judgment.choice, judgment.strength, judgment.both_bad) == (Choice.tie, 0, True)

    # Undo gives the answer back as it was given: no pick (a two-point scale has no tie), both bad.
    _, previous = rating.undo_last(session, project=project, rater_id=rater.id, window=timedelta(minutes=5))
    assert (previous.pick, previous.both_bad) == (None, True)
    rating.submit_judgment(session, project=project, rater_id=rater.id, data=previous)
    theirs = rating.claim_next(session, project=project, rater_id=other.id)
    answer = JudgmentInput(theirs.id, pick=-1)
    rating.submit_judgment(session, project=project, rater_id=other.id, data=answer)

    def rows(**options: object) -> tuple[list, PreferenceStats]:
        stats = PreferenceStats()
        found = list(preference_rows(session, project_id=project.id, stats=stats, **options))
        return found, stats

    dropped, stats = rows()
    assert [(r.comparison_id, r.votes, r.agreement) for r in dropped] == [(pair.id, 1, 1.0)]
    assert stats.dropped["both_bad"] == 1
    kept, _ = rows(include_both_bad=True)  # a vote for neither side: it halves the agreement
    assert [(r.votes, r.agreement) for r in kept] == [(2, 0.5)]
    raw, _ = rows(include_both_bad=True, aggregation="per_rater")
    assert [r.votes_used[0].rater_id for r in raw] == [other.id]  # the tie gives no row of its own
