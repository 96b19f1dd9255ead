"""The short version of bench/faults.py: raters label through the production launch while the
web server is killed with SIGKILL and PostgreSQL restarts; every acknowledged judgment is stored
once and no lease is stuck.

The PostgreSQL it restarts is the harness's own cluster (tests/utils/services.py), with `pg_ctl
restart` on that cluster's data directory, even when TEST_DATABASE_URL points the other tests at
another server. No other server is touched: the test checks that the start time of the machine's
server (127.0.0.1:5432) and of TEST_DATABASE_URL's, where they answer, is the same afterwards.
Without PostgreSQL's server binaries the test is skipped, or fails under RLHF_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import GIVEN_PG_URL, REQUIRE_SERVICES
from tests.utils.services import PrivatePostgres

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "faults.py"
MACHINE_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and RLHF_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)


def started_at(url: str) -> datetime | None:
    """`pg_postmaster_start_time()` of the server at `url`; None when none answers there."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(False)
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def other_servers(private: PrivatePostgres) -> list[str]:
    """The servers that are not the harness's: the machine's default one and TEST_DATABASE_URL's."""
    urls = [MACHINE_PG_URL, *([GIVEN_PG_URL] if GIVEN_PG_URL else [])]
    return [u for u in urls if (make_url(u).host, make_url(u).port or 5432) != (private.host, private.port)]


def test_no_acknowledged_judgment_is_lost_through_kills_and_restarts(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    if not (ROOT / ".venv" / "bin" / "rlhf").exists():
        _missing("the production launch (.venv/bin/rlhf) is not installed")
    others = other_servers(private_postgres)
    others_started = {url: started_at(url) for url in others}
    private_started = started_at(private_postgres.url())
    assert private_started is not None

    database = private_postgres.url(f"rlhf_bench_faults_{os.getpid()}")
    figures = tmp_path / "faults.json"
    command = [
        sys.executable, str(BENCH), "--database-url", database,
        "--raters", "8", "--duration", "24", "--kills", "1", "--pg-restarts", "1",
        "--pg-restart-command", shlex.join(private_postgres.restart_command()),
        "--pairs", "4000", "--completion-chars", "120", "--json", str(figures),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    finally:
        # The session's cluster must be back before the next test, whatever happened above.
        deadline = time.monotonic() + 120
        while not private_postgres.ready() and time.monotonic() < deadline:
            time.sleep(0.5)
    assert private_postgres.ready(), f"PostgreSQL did not come back:\n{private_postgres.log_tail()}"
    assert {url: started_at(url) for url in others} == others_started, "another server was restarted"
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode in (0, 1), output  # 2: the bench could not set up
    result = json.loads(figures.read_text())

    kinds = [fault["kind"] for fault in result["faults"]]
    assert kinds == ["kill web (SIGKILL)", "restart PostgreSQL"], output
    restarted = started_at(private_postgres.url())  # the restart was the harness's cluster's
    assert restarted is not None and restarted > private_started, (restarted, private_started)
    assert result["acknowledged"] > 50, output  # the raters did get work done
    assert result["lost"] == 0, output
    assert result["doubled"] == 0 and result["over_overlap"] == 0, output
    assert result["counter_drift"] == 0, output
    assert result["stuck_leases"] == 0, result["stuck_detail"]
    assert result["acknowledged"] <= result["stored"] <= result["acknowledged"] + result["unknown"], output
    # The faults were felt: the clients saw errors and retried through them.
    assert result["retries"] > 0 and result["errors"], output
    assert result["ok"] and done.returncode == 0, output
