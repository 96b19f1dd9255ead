"""`rlhf import rankings` as an operator runs it, on a project whose task mix ranks: the
rankings stored, a file with the wrong K refused whole, and a rater served a ranking."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker
from app.models import Project, Ranking, User
from app.services.rating.tasks import next_task
from tests.test_cli import _rlhf
from tests.utils.processes import service_env


def test_import_rankings_into_a_ranking_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "db", "upgrade").returncode == 0
    assert _rlhf(env, "projects", "add", "r", "--tasks", "rank").returncode == 0
    assert _rlhf(env, "users", "add", "rory", "--role", "rater").returncode == 0

    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"prompt": "q", "completions": ["a", "b", "c"]}) + "\n")
    refused = _rlhf(env, "import", "rankings", str(short), "--project", "r")
    assert refused.returncode == 1
    assert "line 1, field 'completions': has 3 completions; this project ranks 4 at a time" in refused.stderr

    good = tmp_path / "rankings.jsonl"
    rows = [
        {"prompt": f"q{n}", "completions": [f"t{n}{i}" for i in range(4)], "models": ["m"] * 4}
        for n in range(3)
    ]
    good.write_text("".join(json.dumps(row) + "\n" for row in rows))
    imported = _rlhf(env, "import", "rankings", str(good), "--project", "r")
    assert imported.returncode == 0, imported.stderr
    assert "3 rows, 3 rankings created" in imported.stdout

    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Ranking)) == 3
        project = session.scalars(select(Project).where(Project.slug == "r")).one()
        rory = session.scalars(select(User).where(User.username == "rory")).one()
        task = next_task(session, project, rory.id)
        assert task is not None and task.kind == "rank"
    engine.dispose()
