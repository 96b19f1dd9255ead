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


def make_comparison(
    session: Session,
    project: Project,
    messages: list[dict[str, str]],
    completion_a: str,
    completion_b: str,
) -> Comparison:
    """A comparison under the project's prompt with these messages (created when missing)."""
    from sqlalchemy import select

    digest = messages_hash(messages)
    prompt = session.scalars(
        select(Prompt).where(Prompt.project_id == project.id, Prompt.content_hash == digest)
    ).one_or_none()
    if prompt is None:
        prompt = Prompt(project_id=project.id, messages=messages, content_hash=digest)
        session.add(prompt)
        session.flush()
    a = Completion(prompt_id=prompt.id, text=completion_a, content_hash=text_hash(completion_a))
    b = Completion(prompt_id=prompt.id, text=completion_b, content_hash=text_hash(completion_b))
    session.add_all([a, b])
    session.flush()
    comparison = Comparison(
        project_id=project.id, prompt_id=prompt.id, completion_a_id=a.id, completion_b_id=b.id
    )
    session.add(comparison)
    session.flush()
    return comparison


def make_human_judgment(session: Session, comparison: Comparison, rater: User, choice: str):  # type: ignore[no-untyped-def]
    """A rater's judgment written directly (strength 1, or 0 for a tie), counted on the pair."""
    from app.models import Judgment

    judgment = Judgment(
        comparison_id=comparison.id,
        rater_id=rater.id,
        project_id=comparison.project_id,
        choice=choice,
        strength=0 if choice == "tie" else 1,
        a_on_left=True,
    )
    comparison.judgment_count += 1
    session.add(judgment)
    session.flush()
    return judgment


def make_model_version(  # type: ignore[no-untyped-def]
    session: Session,
    name: str,
    *,
    kind: str = "policy",
    project: Project | None = None,
    parent=None,
    metrics: dict | None = None,
):
    """A registered model version (no files: the web app never opens them)."""
    from app.models import ModelVersion

    version = ModelVersion(
        name=name,
        kind=kind,
        uri=f"/models/{name}",
        project_id=project.id if project else None,
        parent_id=parent.id if parent is not None else None,
        metrics=metrics or {},
    )
    session.add(version)
    session.flush()
    return version


def make_versus_pair(  # type: ignore[no-untyped-def]
    session: Session, project: Project, prompt: str, text_a: str, version_a, text_b: str, version_b
) -> Comparison:
    """A pair whose completions were written by two model versions (what a versus run makes)."""
    comparison = make_comparison(session, project, [{"role": "user", "content": prompt}], text_a, text_b)
    sides = ((comparison.completion_a_id, version_a), (comparison.completion_b_id, version_b))
    for completion_id, version in sides:
        completion = session.get(Completion, completion_id)
        assert completion is not None
        completion.model_version_id = version.id if version is not None else None
    session.flush()
    return comparison


def make_vote(session: Session, comparison: Comparison, rater: User, choice: str, *, source: str = "human"):  # type: ignore[no-untyped-def]
    """A judgment of either source (an AI vote belongs to a judge-role user)."""
    judgment = make_human_judgment(session, comparison, rater, choice)
    judgment.source = source
    session.flush()
    return judgment
