"""Demonstrations of every source and review status, with their reviews, for the tests of what
SFT runs, exports and the quality pages make of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.models import (
    Completion,
    Demonstration,
    DemonstrationReview,
    DemonstrationSource,
    Project,
    Prompt,
    ReviewStatus,
    User,
)
from app.services.content import messages_hash, text_hash

WRITTEN = ["the cat is happy", "a blue bird can sing", "the sea is big and cold", "i like green apple"]
IMPORTED = "banana banana banana"
SUBJECTS = "cat dog bird fish tree sun moon star sky sea river hill".split()


@dataclass
class Seeded:
    written: list[int] = field(default_factory=list)  # accepted, written by `writer`
    improved: list[int] = field(default_factory=list)  # accepted, improved by `editor`
    imported: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # written by `writer`, rejected
    pending: list[int] = field(default_factory=list)  # written by `editor`, not reviewed yet


def _prompt(session: Session, project: Project, i: int) -> Prompt:
    messages = [{"role": "user", "content": f"tell me about the {SUBJECTS[i % len(SUBJECTS)]} {i}"}]
    prompt = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
    session.add(prompt)
    session.flush()
    return prompt


def _demo(session: Session, prompt: Prompt, text: str, **fields: object) -> Demonstration:
    demo = Demonstration(project_id=prompt.project_id, prompt_id=prompt.id, response=text,
                         content_hash=text_hash(text), **fields)  # fmt: skip
    session.add(demo)
    session.flush()
    return demo


def review(session: Session, demo: Demonstration, reviewer: User, *, accepted: bool, score: int) -> None:
    session.add(DemonstrationReview(demonstration_id=demo.id, reviewer_id=reviewer.id,
                                    project_id=demo.project_id, accepted=accepted, score=score))  # fmt: skip
    demo.review_count += 1
    session.flush()


def seed_demonstrations(
    session: Session, project: Project, *, writer: User, editor: User, reviewer: User, n: int
) -> Seeded:
    """For each of `n` prompts: an accepted written answer (score 4, 2 minutes, WRITTEN[i % 4])
    and an imported one; every other prompt also an accepted improved one (score 2 or 3, edit
    distance 4 or 6); every fourth a rejected written one (score 1) and a pending written one."""
    seeded = Seeded()
    accepted, rejected, pending = ReviewStatus.accepted, ReviewStatus.rejected, ReviewStatus.pending
    for i in range(n):
        prompt = _prompt(session, project, i)
        demo = _demo(session, prompt, WRITTEN[i % len(WRITTEN)], source=DemonstrationSource.written,
                     author_id=writer.id, review_status=accepted, time_spent_ms=120_000)  # fmt: skip
        review(session, demo, reviewer, accepted=True, score=4)
        seeded.written.append(demo.id)
        seeded.imported.append(_demo(session, prompt, IMPORTED).id)
        if i % 2 == 0:
            original = Completion(prompt_id=prompt.id, text="the dog", content_hash=text_hash("the dog"))
            session.add(original)
            session.flush()
            demo = _demo(session, prompt, f"the dog runs {i}", source=DemonstrationSource.improved,
                         author_id=editor.id, review_status=accepted, time_spent_ms=30_000,
                         edited_from_completion_id=original.id, diff="-the dog\n+the dog runs",
                         edit_distance=4 if i % 4 == 0 else 6)  # fmt: skip
            review(session, demo, reviewer, accepted=True, score=2 if i % 4 == 0 else 3)
            seeded.improved.append(demo.id)
        if i % 4 == 0:
            demo = _demo(session, prompt, f"no idea {i}", source=DemonstrationSource.written,
                         author_id=writer.id, review_status=rejected, time_spent_ms=5_000,
                         lazy_flags=["duplicate"])  # fmt: skip
            review(session, demo, reviewer, accepted=False, score=1)
            seeded.rejected.append(demo.id)
            demo = _demo(session, prompt, f"maybe later {i}", source=DemonstrationSource.written,
                         author_id=editor.id, review_status=pending)  # fmt: skip
            seeded.pending.append(demo.id)
    return seeded


@dataclass
class Written:
    """What `write_and_review` made, by prompt word."""

    prompts: dict[str, int] = field(default_factory=dict)
    originals: dict[str, Completion] = field(default_factory=dict)  # the completions improved
    written: dict[str, int] = field(default_factory=dict)  # demonstration ids
    improved: dict[str, int] = field(default_factory=dict)


def write_and_review(
    session: Session,
    project: Project,
    *,
    writer: User,
    editor: User,
    reviewer: User,
    words: list[str],
    reject: frozenset[str] = frozenset(),
    version_id: int | None = None,
) -> Written:
    """Through the writing service: a write and an improve task per word ("tell me about the
    WORD"; the completion to improve is "no bad WORD", sampled by `version_id`), answered by
    `writer` ("the WORD is good") and `editor` ("yes good WORD"), then reviewed by `reviewer`:
    score 5 and accepted, but the written answers of the words in `reject` (score 1, rejected)."""
    from app.models import WritingKind
    from app.services import writing

    made = Written()
    for word in words:
        messages = [{"role": "user", "content": f"tell me about the {word}"}]
        prompt = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
        session.add(prompt)
        session.flush()
        text = f"no bad {word}"
        original = Completion(
            prompt_id=prompt.id, text=text, content_hash=text_hash(text), model_version_id=version_id
        )
        session.add(original)
        session.flush()
        made.prompts[word], made.originals[word] = prompt.id, original
        writing.add_tasks(session, project, prompt_ids=[prompt.id], completion_ids=[original.id])
    for user, kind, answer, into in (
        (writer, WritingKind.write, "the {} is good", made.written),
        (editor, WritingKind.improve, "yes good {}", made.improved),
    ):
        while (lease := writing.claim(session, project=project, rater_id=user.id, kind=kind)) is not None:
            word = writing.view(session, lease).messages[0]["content"].split()[-1]
            demo, _ = writing.submit(session, project=project, rater_id=user.id, assignment_id=lease.id,
                                     text=answer.format(word), time_spent_ms=60_000)  # fmt: skip
            into[word] = demo.id
    while (demo := writing.reviews.claim(session, project=project, rater_id=reviewer.id)) is not None:
        bad = demo.id in {made.written[w] for w in reject}
        writing.submit_review(session, project=project, rater_id=reviewer.id, demonstration_id=demo.id,
                              accepted=not bad, score=1 if bad else 5)  # fmt: skip
    return made


def demo_of(
    session: Session, project: Project, author: User | None, i: int, **fields: object
) -> Demonstration:
    messages = [{"role": "user", "content": f"question {author.username if author else 'imported'} {i}"}]
    prompt = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
    session.add(prompt)
    session.flush()
    text = str(fields.pop("text"))
    demo = Demonstration(project_id=project.id, prompt_id=prompt.id, response=text,
                         content_hash=text_hash(text), author_id=author.id if author else None,
                         **fields)  # fmt: skip
    session.add(demo)
    session.flush()
    return demo


def writer_history(
    session: Session, project: Project, author: User, reviewer: User, *, n: int, accepted: int, score: int,
    seconds: int, text: str, improved: int = 0, edit: int = 0, lazy: int = 0,
) -> None:  # fmt: skip
    """`n` demonstrations of `text`, the first `improved` of them improvements (edit distance
    `edit`), `lazy` of them flagged; each reviewed once with `score`, the first `accepted` accepted."""
    for i in range(n):
        source = DemonstrationSource.improved if i < improved else DemonstrationSource.written
        ok = i < accepted
        demo = demo_of(session, project, author, i, text=text, source=source,
                       review_status=ReviewStatus.accepted if ok else ReviewStatus.rejected,
                       time_spent_ms=seconds * 1000, edit_distance=edit if i < improved else None,
                       lazy_flags=["copies_completion"] if i < lazy else [])  # fmt: skip
        review(session, demo, reviewer, accepted=ok, score=score)
