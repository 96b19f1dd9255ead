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


def test_models_prune_removes_only_what_nothing_needs(tmp_path: Path) -> None:
    """Base models, promoted versions, the parents of adapters that stay and versions a queued
    run will load keep their files; the rest go, after a dry run and a confirmation."""
    from app.models import ModelKind, ModelVersion, Run, RunKind, RunStatus
    from app.services.registry import disk_usage

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "db", "upgrade").returncode == 0
    store = tmp_path / "models"

    def version(session, name: str, parent: ModelVersion | None, size: int, **fields: object) -> ModelVersion:  # type: ignore[no-untyped-def]
        (store / name).mkdir(parents=True)
        (store / name / "weights.safetensors").write_bytes(b"w" * size)
        model = ModelVersion(name=name, kind=ModelKind.policy, uri=str(store / name),
                             parent_id=parent.id if parent else None, **fields)  # fmt: skip
        session.add(model)
        session.flush()
        return model

    factory = make_sessionmaker(make_engine(url))
    with factory.begin() as session:
        project = Project(slug="p", name="P")
        session.add(project)
        session.flush()
        base = version(session, "base", None, 1000)  # a base model: never pruned
        kept_parent = version(session, "full-1", base, 800, project_id=project.id)
        version(
            session,
            "adapter-promoted",
            kept_parent,
            30,
            is_adapter=True,
            promoted=True,
            project_id=project.id,
        )
        version(session, "full-unused", base, 700, project_id=project.id)
        unused_parent = version(session, "full-2", base, 600, project_id=project.id)
        version(session, "adapter-unused", unused_parent, 20, is_adapter=True, project_id=project.id)
        queued_base = version(session, "full-queued", base, 500, project_id=project.id)
        session.add(Run(project_id=project.id, kind=RunKind.sft, status=RunStatus.queued,
                        base_model_id=queued_base.id, config={}))  # fmt: skip
        hub = ModelVersion(name="hub", kind=ModelKind.policy, uri="org/some-model")
        session.add(hub)
    gone = {"full-unused", "full-2", "adapter-unused"}
    freed = 700 + 600 + 20

    dry = _rlhf(env, "models", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert all(name in dry.stdout for name in gone) and "full-queued" not in dry.stdout
    assert "3 version(s), would free" in dry.stdout and f"({freed} bytes)" in dry.stdout
    assert all((store / name).exists() for name in gone)

    refused = _rlhf(env, "models", "prune", stdin="n\n")
    assert refused.returncode == 1 and "Nothing removed" in refused.stdout
    assert all((store / name).exists() for name in gone)

    pruned = _rlhf(env, "models", "prune", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "Pruned 3 version(s), freed" in pruned.stdout and f"({freed} bytes)" in pruned.stdout
    assert {p.name for p in store.iterdir()} == {"base", "full-1", "adapter-promoted", "full-queued"}
    with factory() as session:
        rows = {m.name: m for m in session.scalars(select(ModelVersion))}
        assert {name for name, m in rows.items() if m.pruned_at is not None} == gone  # the rows stay
        usage = disk_usage(session)
        assert usage[rows["base"].id] == 1000 and usage[rows["adapter-promoted"].id] == 30
        assert usage[rows["full-2"].id] == 0 and usage[rows["hub"].id] is None
    listed = _rlhf(env, "models", "list")
    assert listed.returncode == 0 and "pruned" in listed.stdout
    assert "Nothing to prune" in _rlhf(env, "models", "prune", "--yes").stdout
    with factory.begin() as session:
        run = session.scalars(select(Run)).one()
        run.status = RunStatus.running  # claimed, the model still loading: no step reported yet
        run_id = run.id
    shown = _rlhf(env, "runs", "show", str(run_id))
    assert "running, starting (loading the model and the data)" in shown.stdout and "0/0" not in shown.stdout
    assert "starting" in _rlhf(env, "runs", "list").stdout


# --- from another directory: the checkout's data directory, and one line when there is no database


def _rlhf_elsewhere(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`scripts/rlhf ARGS` run from `cwd` (outside the checkout) when .venv has the command,
    else the same CLI through this interpreter."""
    script = ROOT / "scripts" / "rlhf"
    command = [str(script)] if (ROOT / ".venv" / "bin" / "rlhf").exists() else (
        [sys.executable, "-c", "from app.cli import main; main()"]
    )  # fmt: skip
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_data_directory_is_the_checkouts_from_any_directory(tmp_path: Path) -> None:
    env = service_env()
    env.pop("DATA_DIR", None)
    code = "from app.config import Settings; s = Settings(); print(s.data_dir, s.database_url)"
    shown = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    data_dir, url = shown.stdout.split()
    assert Path(data_dir) == ROOT / "data" and url == f"sqlite:///{ROOT / 'data' / 'rlhf.db'}"
    # DATA_DIR moves everything that has no setting of its own.
    from app.config import Settings

    moved = Settings(data_dir=tmp_path / "elsewhere")
    assert moved.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'rlhf.db'}"
    assert moved.artifacts_dir == tmp_path / "elsewhere" / "artifacts"


def test_a_missing_or_unmigrated_database_gets_one_line(tmp_path: Path) -> None:
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    data = tmp_path / "data"
    env = service_env(DATA_DIR=str(data), ENVIRONMENT="development")

    for args in (["projects", "list"], ["users", "list"], ["models", "list"], ["quality", "demo"],
                 ["export", "comparisons", "--project", "demo", "-o", "out.zip"]):  # fmt: skip
        missing = _rlhf_elsewhere(cwd, env, *args)
        assert missing.returncode == 1, (args, missing.stdout, missing.stderr)
        assert missing.stderr.strip() == (
            f"error: There is no database at {data / 'rlhf.db'}: run `rlhf db upgrade` (or scripts/run)."
        ), args
    current = _rlhf_elsewhere(cwd, env, "db", "current")
    assert current.returncode == 0 and "no database file" in current.stdout
    assert not data.exists() and not list(cwd.iterdir()), "a reading command created nothing"

    data.mkdir()
    (data / "rlhf.db").touch()  # a file without tables
    empty = _rlhf_elsewhere(cwd, env, "projects", "list")
    assert empty.returncode == 1 and empty.stderr.strip() == (
        f"error: The database at {data / 'rlhf.db'} has no tables: run `rlhf db upgrade` (or scripts/run)."
    )
    assert _rlhf_elsewhere(cwd, env, "db", "upgrade").returncode == 0
    listed = _rlhf_elsewhere(cwd, env, "projects", "list")
    assert listed.returncode == 0, listed.stderr
    assert not list(cwd.iterdir()), "nothing lands in the working directory"
