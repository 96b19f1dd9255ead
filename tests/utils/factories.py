"""Rows for tests, made through the same services the app uses where one exists."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.auth import hash_password
from app.models import Comparison, ComparisonKind, Completion, Project, Prompt, Role, User
from app.services.content import messages_hash, text_hash

PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # hashing once keeps tests with many users fast


def make_user(session: Session, username: str, role: Role | str = Role.rater) -> User:
    user = User(username=username, password_hash=_HASH, role=Role(role))
    session.add(user)
    session.flush()
    return user


def make_project(session: Session, slug: str = "demo", **fields: object) -> Project:
    values: dict[str, object] = {"name": slug.title(), "overlap": 1, "flags": []}
    values.update(fields)
    project = Project(slug=slug, **values)
    session.add(project)
    session.flush()
    return project


def make_pair(
    session: Session,
    project: Project,
    prompt: str,
    completion_a: str,
    completion_b: str,
    *,
    gold: str | None = None,
) -> Comparison:
    messages = [{"role": "user", "content": prompt}]
    row = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
    session.add(row)
    session.flush()
    a = Completion(prompt_id=row.id, text=completion_a, content_hash=text_hash(completion_a))
    b = Completion(prompt_id=row.id, text=completion_b, content_hash=text_hash(completion_b))
    session.add_all([a, b])
    session.flush()
    comparison = Comparison(
        project_id=project.id,
        prompt_id=row.id,
        completion_a_id=a.id,
        completion_b_id=b.id,
        kind=ComparisonKind.gold if gold else ComparisonKind.regular,
        gold_choice=gold,
    )
    session.add(comparison)
    session.flush()
    return comparison
