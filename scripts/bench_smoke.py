"""Smoke run of the benches (see scripts/bench_smoke): starts a private PostgreSQL cluster, runs
each `bench/*.py --smoke` with BENCH_POSTGRES pointing at it (and BENCH_PG_RESTART_COMMAND
restarting it, for faults.py), prints each one's exit status and time, and exits 1 when any failed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.utils.services import PrivatePostgres, postgres_bindir  # noqa: E402

TIMEOUT_S = 600


def main(names: list[str]) -> int:
    benches = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    if names:
        benches = [p for p in benches if p.stem in names or p.name in names]
        if not benches:
            sys.exit(f"no bench named {' '.join(names)} under bench/")
    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("PostgreSQL's server (initdb, pg_ctl, postgres) is not installed: the benches need it")
    server = PrivatePostgres(bindir).start()
    failed: list[str] = []
    try:
        base = server.url().removesuffix("/postgres").replace("postgresql+psycopg://", "postgresql://")
        env = dict(
            os.environ, BENCH_POSTGRES=base, BENCH_PG_RESTART_COMMAND=shlex.join(server.restart_command())
        )
        for bench in benches:
            print(f"--- {bench.relative_to(ROOT)} --smoke", flush=True)
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [sys.executable, str(bench), "--smoke"], cwd=ROOT, env=env, timeout=TIMEOUT_S, check=False
                )
                code = done.returncode
            except subprocess.TimeoutExpired:
                code = -1
            seconds = time.monotonic() - started
            status = "ok" if code == 0 else ("timed out" if code == -1 else f"exit {code}")
            print(f"--- {bench.name}: {status} in {seconds:.0f} s", flush=True)
            if code != 0:
                failed.append(bench.name)
    finally:
        server.remove()
    if failed:
        print(f"bench smoke runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(benches)} bench smoke runs passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
