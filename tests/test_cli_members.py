"""`rlhf projects members`, `rlhf groups` and `rlhf users projects`, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Assignment, AssignmentStatus, Project, User, Visibility
from app.services import membership, rating
from tests.test_cli import _rlhf
from tests.utils.processes import service_env


def test_members_groups_and_researcher_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "demo", "--no-model").returncode == 0  # project demo; users rater, researcher
    assert _rlhf(env, "users", "add", "vendor1", "--role", "rater").returncode == 0

    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        project = session.scalars(select(Project).where(Project.slug == "demo")).one()
        rater = session.scalars(select(User).where(User.username == "rater")).one()
        held = rating.claim_next(session, project=project, rater_id=rater.id)
        assert held is not None
        held_id = held.id

    unknown = _rlhf(env, "projects", "members", "demo", "--add", "nobody")
    assert unknown.returncode == 1 and "No user named nobody" in unknown.stderr
    assert _rlhf(env, "groups", "create", "vendor-a").returncode == 0
    assert _rlhf(env, "groups", "add", "vendor-a", "vendor1").returncode == 0
    changed = _rlhf(env, "projects", "members", "demo", "--group", "vendor-a", "--visibility", "members")
    assert changed.returncode == 0, changed.stderr
    assert "members" in changed.stdout and "vendor-a" in changed.stdout
    assert "Released 1 reservation" in changed.stdout  # the demo rater's lease: not a member
    listed = _rlhf(env, "groups", "list")
    assert "vendor1" in listed.stdout and "demo" in listed.stdout

    refused = _rlhf(env, "users", "projects", "rater", "--members-only")
    assert refused.returncode == 1 and "Only researchers" in refused.stderr
    assert _rlhf(env, "users", "projects", "researcher", "--members-only").returncode == 0

    with factory() as session:
        project = session.scalars(select(Project).where(Project.slug == "demo")).one()
        assert project.visibility == Visibility.members
        assert session.get(Assignment, held_id).status == AssignmentStatus.lapsed
        users = {u.username: u for u in session.scalars(select(User))}
        assert membership.can_rate(session, users["vendor1"], project)
        assert not membership.can_rate(session, users["rater"], project)
        assert not membership.can_export(session, users["researcher"], project)

    assert _rlhf(env, "groups", "remove", "vendor-a", "vendor1").returncode == 0
    with factory() as session:
        project = session.scalars(select(Project).where(Project.slug == "demo")).one()
        vendor = session.scalars(select(User).where(User.username == "vendor1")).one()
        assert not membership.can_rate(session, vendor, project)
    engine.dispose()
