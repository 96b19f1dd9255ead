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
        assert (
            session.scalar(
                select(func.count()).select_from(Comparison).where(Comparison.project_id == demo_project.id)
            )
            == 38
        )
        gold = session.scalars(
            select(Comparison).where(Comparison.project_id == demo_project.id, Comparison.kind == "gold")
        ).all()
        assert len(gold) == 6 and all(c.gold_choice in ("A", "B") for c in gold)
        assert demo_project.gold_rate == 0.15
        assert session.scalar(select(func.count()).select_from(Demonstration)) == 10
        assert session.scalar(select(func.count()).select_from(User)) == 4
        helpful = session.scalars(select(Project).where(Project.slug == "helpful")).one()
        assert helpful.overlap == 2
        assert (
            session.scalar(
                select(func.count()).select_from(Comparison).where(Comparison.project_id == helpful.id)
            )
            == 0
        ), "a rejected file stores nothing"
    engine.dispose()


def test_quality_reports_a_project_and_flags_a_biased_rater(tmp_path: Path) -> None:
    import json
    import random

    from app.db import session_scope
    from app.migrations import upgrade
    from tests.utils.factories import make_human_judgment, make_pair, make_project, make_user

    url = f"sqlite:///{tmp_path / 'quality.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(5)
    with session_scope(make_sessionmaker(engine)) as session:
        project = make_project(session, "labels", overlap=2)
        biased, honest = make_user(session, "lefty"), make_user(session, "fair")
        for i in range(60):
            pair = make_pair(session, project, f"p{i}", f"a{i}", f"b{i}")
            for rater in (biased, honest):
                judgment = make_human_judgment(session, pair, rater, "A")
                judgment.a_on_left = rng.random() < 0.5
                # "lefty" picks whatever is on the left; "fair" always picks A, wherever it is.
                if rater is biased:
                    judgment.choice = "A" if judgment.a_on_left else "B"
    engine.dispose()

    report = _rlhf(env, "quality", "labels")
    assert report.returncode == 3, report.stderr  # a flagged rater: a script can alert on it
    assert "120 human judgments" in report.stdout and "lefty: position bias" in report.stdout
    assert "fair:" not in report.stdout
    figures = json.loads(_rlhf(env, "quality", "labels", "--json").stdout)
    assert figures["flagged_raters"] == ["lefty"]
    by_name = {r["username"]: r for r in figures["raters"]}
    assert by_name["lefty"]["left_share"] == 1.0 and by_name["lefty"]["left_p_value"] < 1e-9
    assert 0.2 < by_name["fair"]["left_share"] < 0.8
    missing = _rlhf(env, "quality", "nope")
    assert missing.returncode == 1 and "no project 'nope'" in missing.stderr
