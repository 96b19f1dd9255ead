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
