"""Work directories left by a killed worker are removed once their run is finished, never before."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.models import Run, RunKind, RunStatus
from tests.utils.factories import make_project
from worker.runner import sweep_work_dirs


def test_sweep_removes_only_finished_runs_directories(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory() as session, session.begin():
        project = make_project(session, "sweep")
        ids = {}
        for status in (RunStatus.failed, RunStatus.running, RunStatus.queued, RunStatus.succeeded):
            run = Run(project_id=project.id, kind=RunKind.sft, status=status, config={})
            session.add(run)
            session.flush()
            ids[status] = run.id
    root = tmp_path / ".work"
    dirs = {status: root / f"run-{run_id}-0123abcd" for status, run_id in ids.items()}
    orphan = root / "run-999999-89abcdef"  # its run no longer exists
    unrelated = root / "notes"
    for directory in [*dirs.values(), orphan, unrelated]:
        (directory / "model").mkdir(parents=True)
        (directory / "model" / "weights.bin").write_bytes(b"partial")

    removed = sweep_work_dirs(root, session_factory)

    assert sorted(removed) == sorted([dirs[RunStatus.failed], dirs[RunStatus.succeeded], orphan])
    assert dirs[RunStatus.running].exists() and dirs[RunStatus.queued].exists()
    assert unrelated.exists()
    assert sweep_work_dirs(root, session_factory) == []
    assert sweep_work_dirs(tmp_path / "missing", session_factory) == []
