"""The short version of bench/faults.py: raters label through the production launch while the
web server is killed with SIGKILL and PostgreSQL restarts; every acknowledged judgment is stored
once and no lease is stuck.

It restarts the local PostgreSQL server, which the other tests share: pytest runs the tests one
after another, and this one waits until PostgreSQL answers again before it ends. It needs the
right to restart it (root and `pg_ctlcluster`); without it the test is skipped, or fails under
RLHF_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, REQUIRE_SERVICES

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "faults.py"


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and RLHF_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)


def _pg_ready(host: str, port: int) -> bool:
    command = ["pg_isready", "-q", "-h", host, "-p", str(port)]
    return subprocess.run(command, check=False).returncode == 0


def test_no_acknowledged_judgment_is_lost_through_kills_and_restarts(tmp_path: Path) -> None:
    url = make_url(PG_URL)
    host, port = url.host or "127.0.0.1", url.port or 5432
    if shutil.which("pg_isready") is None:
        _missing("pg_isready is not installed")
    if not _pg_ready(host, port):
        _missing(f"PostgreSQL is not reachable at {host}:{port}")
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        _missing("restarting PostgreSQL needs root and pg_ctlcluster")
    if not (ROOT / ".venv" / "bin" / "rlhf").exists():
        _missing("the production launch (.venv/bin/rlhf) is not installed")

    database = url.set(drivername="postgresql+psycopg", database=f"rlhf_bench_faults_{os.getpid()}")
    figures = tmp_path / "faults.json"
    command = [
        sys.executable, str(BENCH), "--database-url", database.render_as_string(hide_password=False),
        "--raters", "8", "--duration", "24", "--kills", "1", "--pg-restarts", "1",
        "--pairs", "4000", "--completion-chars", "120", "--json", str(figures),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    finally:
        # The shared server must be back before the next test, whatever happened above.
        deadline = time.monotonic() + 120
        while not _pg_ready(host, port) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert _pg_ready(host, port), "PostgreSQL did not come back"
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode in (0, 1), output  # 2: the bench could not set up
    result = json.loads(figures.read_text())

    kinds = [fault["kind"] for fault in result["faults"]]
    assert kinds == ["kill web (SIGKILL)", "restart PostgreSQL"], output
    assert result["acknowledged"] > 50, output  # the raters did get work done
    assert result["lost"] == 0, output
    assert result["doubled"] == 0 and result["over_overlap"] == 0, output
    assert result["counter_drift"] == 0, output
    assert result["stuck_leases"] == 0, result["stuck_detail"]
    assert result["acknowledged"] <= result["stored"] <= result["acknowledged"] + result["unknown"], output
    # The faults were felt: the clients saw errors and retried through them.
    assert result["retries"] > 0 and result["errors"], output
    assert result["ok"] and done.returncode == 0, output
