"""The `rlhf` command as an operator runs it: a fresh SQLite database, real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker
from app.models import Comparison, Demonstration, Project, User
from tests.utils.processes import ROOT, service_env


def _rlhf(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_demo_users_projects_and_import(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    demo = _rlhf(env, "demo", "--no-model")
    assert demo.returncode == 0, demo.stderr
    assert "rater-demo-password" in demo.stdout and "10" in demo.stdout
    again = _rlhf(env, "demo", "--no-model")
    assert "exists already" in again.stdout

    short = _rlhf(env, "users", "add", "bob", "--role", "rater", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    added = _rlhf(env, "users", "add", "alice", "--role", "admin")
    assert added.returncode == 0 and "One-time password" in added.stdout
    project = _rlhf(env, "projects", "add", "helpful", "--name", "Helpful", "--overlap", "2")
    assert project.returncode == 0, project.stderr

    bad = tmp_path / "pairs.csv"
    bad.write_text("prompt,completion_a,completion_b\nhi,hello,hey\nbye,,ciao\n")
    rejected = _rlhf(env, "import", "pairs", str(bad), "--project", "helpful")
    assert rejected.returncode == 1 and "line 3" in rejected.stderr and "completion_a" in rejected.stderr

    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        demo_project = session.scalars(select(Project).where(Project.slug == "demo")).one()
        assert session.scalar(
            select(func.count()).select_from(Comparison).where(Comparison.project_id == demo_project.id)
        ) == 38
        gold = session.scalars(
            select(Comparison).where(Comparison.project_id == demo_project.id, Comparison.kind == "gold")
        ).all()
        assert len(gold) == 6 and all(c.gold_choice in ("A", "B") for c in gold)
        assert demo_project.gold_rate == 0.15
        assert session.scalar(select(func.count()).select_from(Demonstration)) == 10
        assert session.scalar(select(func.count()).select_from(User)) == 4
        helpful = session.scalars(select(Project).where(Project.slug == "helpful")).one()
        assert helpful.overlap == 2
        assert session.scalar(
            select(func.count()).select_from(Comparison).where(Comparison.project_id == helpful.id)
        ) == 0, "a rejected file stores nothing"
    engine.dispose()
