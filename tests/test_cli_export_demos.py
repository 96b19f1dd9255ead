"""`rlhf export demos` chooses demonstrations by source and review, and refuses a bad choice."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import _rlhf
from tests.utils.processes import service_env


def test_export_demos_by_source(tmp_path: Path) -> None:
    env = service_env(DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", DATA_DIR=str(tmp_path / "data"),
                      ENVIRONMENT="development")  # fmt: skip
    assert _rlhf(env, "demo", "--no-model").returncode == 0  # 10 imported demonstrations

    out = tmp_path / "imported.jsonl"
    done = _rlhf(env, "export", "demos", "--project", "demo", "--source", "imported", "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and {(r["source"], r["author"], r["review_status"]) for r in rows} == {
        ("imported", "", "accepted")
    }
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)

    written = tmp_path / "written.jsonl"
    none = _rlhf(env, "export", "demos", "--project", "demo", "--source", "written", "--include-pending",
                 "-o", str(written))  # fmt: skip
    assert none.returncode == 0 and written.read_text() == ""  # nobody wrote any yet

    bad = _rlhf(env, "export", "demos", "--project", "demo", "--source", "everything", "-o", str(written))
    assert bad.returncode == 2 and "demonstration_source" in bad.stderr
