"""Imported lines with a NUL, a lone surrogate or over-deep JSON are refused by line and field,
and nothing is stored: the upload page answers 422, `rlhf import` one error without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import Comparison, Role
from tests.utils.factories import make_project, make_user
from tests.utils.web import csrf_from, login

GOOD = json.dumps({"prompt": "Say hi", "completion_a": "Hi!", "completion_b": "Hello."})
DEEP = "[" * 100_000 + "]" * 100_000
# (line 2 of the file, the field the problem names)
HOSTILE = {
    "nul": (json.dumps({"prompt": "a\u0000b", "completion_a": "x", "completion_b": "y"}), "prompt"),
    "surrogate": ('{"prompt": "q", "completion_a": "\\ud800", "completion_b": "y"}', "completion_a"),
    "deep": (
        '{"prompt": "q", "completion_a": "x", "completion_b": "y", "sampling_a": {"k": ' + DEEP + "}}",
        "sampling_a",
    ),  # fmt: skip
}


def _file(case: str) -> bytes:
    return (GOOD + "\n" + HOSTILE[case][0] + "\n").encode()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_upload_page_refuses_the_line(app, client, case: str) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_project(session, "proj")
    login(client, "ada")
    token = csrf_from(client.get("/admin/projects/proj/import").text)
    answer = client.post(
        "/admin/projects/proj/import",
        data={"kind": "pairs", "csrf_token": token},
        files={"file": ("pairs.jsonl", _file(case), "application/jsonl")},
    )
    assert answer.status_code == 422, answer.text[:300]
    assert "line 2" in answer.text and HOSTILE[case][1] in answer.text
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Comparison)) == 0


def test_rlhf_import_refuses_the_line_and_rlhf_audit_lists_actions(tmp_path: Path) -> None:
    from app.db import make_engine, make_sessionmaker
    from tests.test_cli import _rlhf
    from tests.utils.processes import service_env

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "db", "upgrade").returncode == 0
    assert _rlhf(env, "projects", "add", "proj").returncode == 0
    added = _rlhf(env, "users", "add", "rita", "--password-stdin", stdin="a-secret-password-9\n")
    assert added.returncode == 0, added.stderr
    for case, (_line, field) in HOSTILE.items():
        path = tmp_path / f"{case}.jsonl"
        path.write_bytes(_file(case))
        answer = _rlhf(env, "import", "pairs", str(path), "--project", "proj")
        assert answer.returncode == 1, (case, answer.stdout)
        assert "line 2" in answer.stderr and field in answer.stderr, answer.stderr
        assert "Traceback" not in answer.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    assert _rlhf(env, "import", "pairs", str(good), "--project", "proj").returncode == 0
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Comparison)) == 1
    engine.dispose()

    listed = _rlhf(env, "audit", "--json")
    assert listed.returncode == 0, listed.stderr
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["action"] for e in events] == ["project.import", "user.create", "project.create"]
    assert all(e["kind"] == "cli" and e["actor"].startswith("cli:") for e in events)
    assert events[0]["project"] == "proj" and events[0]["target"] == "file:good.jsonl"
    assert events[1]["target"] == "user:rita" and "a-secret-password-9" not in listed.stdout
    only = _rlhf(env, "audit", "--json", "--action", "project", "--project", "proj", "--limit", "1")
    assert [json.loads(line)["action"] for line in only.stdout.splitlines()] == ["project.import"]
    none = _rlhf(env, "audit", "--json", "--since", "2999-01-01")
    assert none.returncode == 0 and none.stdout == ""
    table = _rlhf(env, "audit", "--actor", "nobody")
    assert table.returncode == 0 and "No events" in table.stdout
