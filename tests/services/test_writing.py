"""Writing tasks, drafts, submissions, the edit preference, lazy-writer checks, reviews and the
task dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    AssignmentStatus,
    Comparison,
    Completion,
    Demonstration,
    Draft,
    Judgment,
    JudgmentSource,
    Project,
    ProjectMember,
    Prompt,
    ReviewStatus,
    WritingKind,
)
from app.models.types import utcnow
from app.services import rating, writing
from app.services.content import messages_hash, text_hash
from app.services.rating import InvalidJudgment, NotAssigned, PairFilled
from app.services.rating.tasks import next_task
from app.task_kinds import InvalidMix, TaskKind, parse_mix
from tests.utils.factories import make_model_version, make_project, make_user


def _prompt(session: Session, project: Project, text: str) -> Prompt:
    messages = [{"role": "user", "content": text}]
    prompt = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
    session.add(prompt)
    session.flush()
    return prompt


def _completion(session: Session, prompt: Prompt, text: str, version_id: int | None = None) -> Completion:
    completion = Completion(
        prompt_id=prompt.id, text=text, content_hash=text_hash(text), model_version_id=version_id
    )
    session.add(completion)
    session.flush()
    return completion


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_write_task_claim_submit_once_and_overlap(session: Session) -> None:
    project = make_project(session, task_mix={"write": 1.0}, writing_overlap=1)
    prompt = _prompt(session, project, "Explain recursion")
    assert writing.add_tasks(session, project, prompt_ids=[prompt.id, prompt.id]) == 1
    assert writing.add_tasks(session, project, prompt_ids=[prompt.id]) == 0
    a, b = make_user(session, "a"), make_user(session, "b")
    lease = writing.claim(session, project=project, rater_id=a.id, kind=WritingKind.write)
    assert lease is not None
    assert writing.claim(session, project=project, rater_id=b.id, kind=WritingKind.write) is None
    demo, created = writing.submit(
        session, project=project, rater_id=a.id, assignment_id=lease.id, text="It calls itself."
    )
    again, created_again = writing.submit(
        session, project=project, rater_id=a.id, assignment_id=lease.id, text="other"
    )
    assert created and not created_again and again.id == demo.id
    assert _count(session, Demonstration) == 1
    assert demo.source == "written" and demo.author_id == a.id and demo.prompt_id == prompt.id
    assert demo.review_status == ReviewStatus.pending and demo.lazy_flags == []
    assert writing.claim(session, project=project, rater_id=b.id, kind=WritingKind.write) is None
    with pytest.raises(NotAssigned):
        writing.submit(session, project=project, rater_id=b.id, assignment_id=lease.id, text="x")


@pytest.mark.parametrize(
    ("text", "field_message"),
    [("", "empty"), ("   \n\t ", "empty"), ("a\x00b", "NUL"), ("x" * 101, "at most 100")],
)
def test_bad_answers_are_refused_and_the_draft_is_kept(
    session: Session, text: str, field_message: str
) -> None:
    project = make_project(session, task_mix={"write": 1.0}, max_answer_chars=100)
    prompt = _prompt(session, project, "Say hi")
    writing.add_tasks(session, project, prompt_ids=[prompt.id])
    rater = make_user(session, "w")
    lease = writing.claim(session, project=project, rater_id=rater.id, kind=WritingKind.write)
    assert lease is not None
    writing.save_draft(session, project=project, rater_id=rater.id, assignment_id=lease.id, text="my draft")
    with pytest.raises(InvalidJudgment) as refused:
        writing.submit(session, project=project, rater_id=rater.id, assignment_id=lease.id, text=text)
    assert str(refused.value).startswith("answer:") and field_message in str(refused.value)
    assert _count(session, Demonstration) == 0
    assert writing.view(session, lease).draft == "my draft"


def test_drafts_latest_wins_and_go_on_submit(session: Session) -> None:
    project = make_project(session, task_mix={"write": 1.0})
    writing.add_tasks(session, project, prompt_ids=[_prompt(session, project, "q").id])
    rater = make_user(session, "w")
    lease = writing.claim(session, project=project, rater_id=rater.id, kind=WritingKind.write)
    assert lease is not None
    for text in ("A", "AB", "ABC"):
        writing.save_draft(session, project=project, rater_id=rater.id, assignment_id=lease.id, text=text)
    assert writing.view(session, lease).draft == "ABC" and _count(session, Draft) == 1
    with pytest.raises(InvalidJudgment):
        writing.save_draft(session, project=project, rater_id=rater.id, assignment_id=lease.id, text="\x00")
    writing.submit(session, project=project, rater_id=rater.id, assignment_id=lease.id, text="ABC")
    assert _count(session, Draft) == 0


def test_improve_keeps_origin_diff_distance_and_edit_preference(session: Session) -> None:
    project = make_project(session, task_mix={"improve": 1.0})
    version = make_model_version(session, "policy-v1", project=project)
    prompt = _prompt(session, project, "Add 2 and 2")
    original = _completion(session, prompt, "2 + 2 = 5", version.id)
    assert writing.add_tasks(session, project, completion_ids=[original.id]) == 1
    rater = make_user(session, "editor")
    lease = writing.claim(session, project=project, rater_id=rater.id, kind=WritingKind.improve)
    assert lease is not None and writing.view(session, lease).start_text == "2 + 2 = 5"
    demo, _ = writing.submit(
        session, project=project, rater_id=rater.id, assignment_id=lease.id, text="2 + 2 = 4"
    )
    assert demo.source == "improved"
    assert demo.edited_from_completion_id == original.id and demo.edited_from_model_version_id == version.id
    assert demo.edit_distance == 1 and "-2 + 2 = 5" in demo.diff and "+2 + 2 = 4" in demo.diff
    judgment = session.scalars(select(Judgment).where(Judgment.source == JudgmentSource.edit)).one()
    comparison = session.get(Comparison, judgment.comparison_id)
    assert comparison is not None and comparison.completion_b_id == original.id
    edited = session.get(Completion, comparison.completion_a_id)
    assert edited is not None and edited.text == "2 + 2 = 4" and edited.model_version_id is None
    assert judgment.choice == "A" and judgment.rater_id == rater.id
    # Undo withdraws the row and its preference, and gives the text back as the draft.
    back = writing.undo_last(session, project=project, rater_id=rater.id, window=timedelta(minutes=5))
    assert back is not None and back.id == lease.id and back.status == AssignmentStatus.active
    assert _count(session, Demonstration) == 0 and _count(session, Judgment) == 0
    assert writing.view(session, back).draft == "2 + 2 = 4"


def test_an_edit_pair_is_never_served_to_compare_raters(session: Session) -> None:
    # The improvement's pair (edit beats original) is labelled by its edit: with an overlap of 3
    # it would otherwise wait for two more raters in the compare queue.
    project = make_project(session, task_mix={"improve": 1.0, "compare": 1.0}, overlap=3)
    prompt = _prompt(session, project, "Add 2 and 2")
    original = _completion(session, prompt, "2 + 2 = 5")
    writing.add_tasks(session, project, completion_ids=[original.id])
    editor, judge = make_user(session, "editor"), make_user(session, "judge")
    lease = writing.claim(session, project=project, rater_id=editor.id, kind=WritingKind.improve)
    assert lease is not None
    writing.submit(session, project=project, rater_id=editor.id, assignment_id=lease.id, text="2 + 2 = 4")
    assert session.scalars(select(Judgment.source)).all() == [JudgmentSource.edit]
    assert rating.claim_next(session, project=project, rater_id=judge.id) is None
    assert rating.progress(session, project=project, rater_id=judge.id).remaining == 0


def test_lazy_writer_checks(session: Session) -> None:
    project = make_project(session, task_mix={"write": 1.0, "improve": 1.0}, writing_overlap=2)
    prompt = _prompt(session, project, "Name a colour")
    completion = _completion(session, prompt, "Blue is a colour.")
    writing.add_tasks(session, project, prompt_ids=[prompt.id], completion_ids=[completion.id])
    copier, keeper, honest, twin = (make_user(session, n) for n in ("copier", "keeper", "honest", "twin"))

    def answer(user, kind: WritingKind, text: str) -> Demonstration:  # type: ignore[no-untyped-def]
        lease = writing.claim(session, project=project, rater_id=user.id, kind=kind)
        assert lease is not None
        return writing.submit(session, project=project, rater_id=user.id, assignment_id=lease.id, text=text)[
            0
        ]

    assert answer(copier, WritingKind.write, "  blue is a  COLOUR. ").lazy_flags == ["copies_completion"]
    assert answer(keeper, WritingKind.improve, "Blue is a colour.").lazy_flags == ["unchanged", "duplicate"]
    assert _count(session, Judgment) == 0, "an unchanged improvement is no preference"
    assert (
        answer(honest, WritingKind.improve, "Red: the colour of blood and of ripe tomatoes.").lazy_flags == []
    )
    assert answer(twin, WritingKind.write, "Red: the colour of blood and of ripe tomatoes.").lazy_flags == [
        "duplicate"
    ]


def test_reviews_never_own_overlap_and_majority_rule(session: Session) -> None:
    project = make_project(
        session, task_mix={"write": 1.0, "review": 1.0}, review_overlap=3, flags=["unsafe"]
    )
    writing.add_tasks(session, project, prompt_ids=[_prompt(session, project, "q").id])
    author = make_user(session, "author")
    lease = writing.claim(session, project=project, rater_id=author.id, kind=WritingKind.write)
    assert lease is not None
    demo, _ = writing.submit(
        session, project=project, rater_id=author.id, assignment_id=lease.id, text="answer"
    )
    assert writing.reviews.claim(session, project=project, rater_id=author.id) is None
    with pytest.raises(NotAssigned):
        writing.submit_review(session, project=project, rater_id=author.id, demonstration_id=demo.id,
                              accepted=True, score=5)  # fmt: skip
    reviewers = [make_user(session, f"rev{i}") for i in range(4)]
    with pytest.raises(InvalidJudgment):
        writing.submit_review(session, project=project, rater_id=reviewers[0].id, demonstration_id=demo.id,
                              accepted=True, score=6)  # fmt: skip
    with pytest.raises(InvalidJudgment):
        writing.submit_review(session, project=project, rater_id=reviewers[0].id, demonstration_id=demo.id,
                              accepted=True, score=3, flags=("nope",))  # fmt: skip
    for reviewer, accepted in zip(reviewers[:3], (True, False, True), strict=True):
        assert writing.reviews.claim(session, project=project, rater_id=reviewer.id) is demo
        assert demo.review_status == ReviewStatus.pending
        writing.submit_review(session, project=project, rater_id=reviewer.id, demonstration_id=demo.id,
                              accepted=accepted, score=4, flags=("unsafe",), note="ok")  # fmt: skip
    assert demo.review_count == 3 and demo.review_status == ReviewStatus.accepted
    assert writing.reviews.claim(session, project=project, rater_id=reviewers[3].id) is None
    with pytest.raises(PairFilled):
        writing.submit_review(session, project=project, rater_id=reviewers[3].id, demonstration_id=demo.id,
                              accepted=False, score=1)  # fmt: skip
    assert (
        writing.decide(1, 2, 2) == ReviewStatus.rejected and writing.decide(2, 2, 2) == ReviewStatus.accepted
    )
    # A reviewed demonstration can no longer be undone.
    assert writing.undo_last(session, project=project, rater_id=author.id, window=timedelta(hours=1)) is None


def test_dispatcher_follows_the_mix_member_kinds_and_held_leases(session: Session) -> None:
    project = make_project(session, task_mix={"compare": 0.0, "write": 1.0, "improve": 1.0})
    prompt = _prompt(session, project, "q")
    completion = _completion(session, prompt, "draft answer")
    writing.add_tasks(session, project, prompt_ids=[prompt.id], completion_ids=[completion.id])
    rater = make_user(session, "r")
    session.add(ProjectMember(project_id=project.id, user_id=rater.id, task_kinds=["improve"]))
    session.flush()
    task = next_task(session, project, rater.id, rng=random.Random(1))
    assert task is not None and task.kind == TaskKind.improve
    again = next_task(session, project, rater.id, rng=random.Random(2))
    assert again is not None and again.lease.id == task.lease.id, "a held lease comes first"
    other = make_user(session, "other")  # no member row: every kind of the mix
    got = next_task(session, project, other.id, rng=random.Random(3))
    assert got is not None and got.kind == TaskKind.write, (
        "improve's only task is leased: falls back to write"
    )
    now = utcnow()
    assert next_task(session, project, make_user(session, "third").id, now=now) is None


def test_parse_mix() -> None:
    assert parse_mix("compare=0.7,write=0.3") == {"compare": 0.7, "write": 0.3}
    assert parse_mix("review") == {"review": 1.0}
    for bad, message in (("draw=1", "unknown task kind"), ("write=x", "not a number"),
                         ("write=0", "at least one"), ("write=-1", ">= 0")):  # fmt: skip
        with pytest.raises(InvalidMix, match=message):
            parse_mix(bad)
