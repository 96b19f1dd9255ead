"""Ranking rows for tests: a prompt, its K completions and the ranking over them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ComparisonKind, Completion, Project, Prompt, Ranking
from app.services.content import messages_hash, text_hash


def make_ranking(
    session: Session,
    project: Project,
    prompt: str,
    completions: list[str],
    *,
    gold_ranks: list[int] | None = None,
) -> Ranking:
    messages = [{"role": "user", "content": prompt}]
    row = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
    session.add(row)
    session.flush()
    rows = [Completion(prompt_id=row.id, text=text, content_hash=text_hash(text)) for text in completions]
    session.add_all(rows)
    session.flush()
    ranking = Ranking(
        project_id=project.id,
        prompt_id=row.id,
        kind=ComparisonKind.gold if gold_ranks else ComparisonKind.regular,
        completion_ids=[completion.id for completion in rows],
        gold_ranks=gold_ranks,
    )
    session.add(ranking)
    session.flush()
    return ranking
