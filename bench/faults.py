"""Faults under load: raters keep labeling while the web server is killed and PostgreSQL restarts.

What one run does (``--help`` documents every option):

1. creates a scratch database (default ``rlhf_bench_faults``) and seeds one project with
   ``--pairs`` pairs and ``--raters`` rater accounts by COPY (bench/rating_load.py's seeding);
2. starts the production launch, ``rlhf serve --workers W`` with ENVIRONMENT=production and a
   random SECRET_KEY, and logs every rater in through the login form;
3. has every rater loop "submit the pair on screen -> receive the next" for ``--duration``
   seconds, while, at evenly spaced moments, the whole server (its process group) is killed
   with SIGKILL and started again on the same port (``--kills`` times), and PostgreSQL is
   restarted (``--pg-restarts`` times, with ``--pg-restart-command``);
4. a rater whose request fails (connection refused or reset, timeout, 5xx) does what a browser
   user does: waits a moment and sends the same judgment again, with the same assignment id,
   until it is answered or ``--give-up-after`` seconds have passed;
5. stops the server and checks PostgreSQL against what the clients were told.

Printed: judgments acknowledged (a 200 to a submit), stored, lost (acknowledged, not stored),
doubled ((comparison, rater) stored twice), over the overlap, stuck leases, retries, the errors
the clients saw by kind, and the downtime of each fault. Exit status 1 when an invariant fails
(lost, doubled, over-overlap, stuck leases, or more stored than could have been), 2 on a setup
failure, 0 otherwise. ``--json PATH`` also writes the figures as JSON.

Needs PostgreSQL on this machine (trust auth), the right to restart it (root, for
``pg_ctlcluster``), and the project's virtual environment. Not a test: the short version that
runs in CI is tests/test_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rating_load import (
    PICKS,
    SLUG,
    Clock,
    LoadStats,
    Rater,
    Seeded,
    Server,
    check_database,
    console,
    create_database,
    drop_database,
    seed,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from app.db import normalize_url

# BENCH_POSTGRES: the PostgreSQL server of the benches, BENCH_PG_RESTART_COMMAND the command that
# restarts it (scripts/bench_smoke sets both for its own cluster).
DEFAULT_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432") + "/rlhf_bench_faults"


def _default_pg_restart() -> str:
    if command := os.environ.get("BENCH_PG_RESTART_COMMAND"):
        return command
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    version = versions[-1] if versions else "15"
    return f"pg_ctlcluster --skip-systemctl-redirect {version} main restart"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/faults.py",
        description="Raters label through `rlhf serve` on PostgreSQL while the server is killed "
        "(SIGKILL) and restarted and PostgreSQL is restarted; then every acknowledged judgment "
        "must be stored once, and no lease stuck.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="PostgreSQL URL of the scratch database (created, then dropped; an existing one is "
        "dropped only when a bench made it).",
    )
    p.add_argument("--raters", type=int, default=64, help="Concurrent simulated raters.")
    p.add_argument("--duration", type=float, default=180.0, help="Seconds of load, faults included.")
    p.add_argument("--kills", type=int, default=2, help="Times the web server is killed with SIGKILL.")
    p.add_argument("--pg-restarts", type=int, default=1, help="Times PostgreSQL is restarted.")
    p.add_argument(
        "--pg-restart-command",
        default=_default_pg_restart(),
        help="Shell command that restarts PostgreSQL (this machine's cluster).",
    )
    p.add_argument("--pairs", type=int, default=60_000, help="Pairs to seed (raters that run out stop).")
    p.add_argument("--overlap", type=int, default=2, help="Distinct raters wanted per pair.")
    p.add_argument("--completion-chars", type=int, default=300, help="Length of each seeded completion.")
    p.add_argument("--workers", type=int, default=2, help="Web processes of `rlhf serve`.")
    p.add_argument("--host", default="127.0.0.1", help="Address the server listens on.")
    p.add_argument("--port", type=int, default=0, help="Server port (0: a free one, kept across restarts).")
    p.add_argument("--think-ms", type=float, default=0.0, help="Pause before each submit (0: closed loop).")
    p.add_argument("--timeout", type=float, default=10.0, help="Per-request timeout, seconds.")
    p.add_argument(
        "--give-up-after",
        type=float,
        default=90.0,
        help="A rater stops re-sending a judgment after this many seconds without an answer.",
    )
    p.add_argument("--login-concurrency", type=int, default=4, help="Logins in flight at once.")
    p.add_argument("--seed", type=int, default=1, help="Seed of the data and of the picks.")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="Also write the figures here.")
    p.add_argument("--keep", action="store_true", help="Keep the scratch database afterwards.")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="A tiny run (4 raters, 12 s, one kill, and one PostgreSQL restart when "
        "BENCH_PG_RESTART_COMMAND is set): checks that the bench runs.",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.raters, args.duration, args.kills, args.pairs, args.completion_chars = 4, 12.0, 1, 1000, 120
        args.pg_restarts = 1 if os.environ.get("BENCH_PG_RESTART_COMMAND") else 0
    if min(args.raters, args.pairs, args.overlap, args.workers) < 1:
        p.error("--raters, --pairs, --overlap and --workers must be at least 1")
    if args.duration <= 0 or args.kills < 0 or args.pg_restarts < 0:
        p.error("--duration must be positive, --kills and --pg-restarts not negative")
    # What rating_load's Rater and seeding read from their options.
    args.client, args.reload_every, args.max_retries = "httpx", 0, 0
    return args


# --- the raters -----------------------------------------------------------------------------


class FaultRater(Rater):
    """A rater who, like a person at a browser, keeps re-sending what did not go through."""

    deadline: float = 0.0  # monotonic time after which no new judgment is started

    async def _retrying(self, call: Any, what: str) -> Any:
        """`call()` until it gets an answer below 500, or --give-up-after seconds pass."""
        started = time.monotonic()
        attempt = 0
        while True:
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2 ** min(attempt, 8)) * (0.5 + self.rng.random()))
            attempt += 1
            try:
                answer = await call()
            except httpx.TransportError as error:
                self.stats.errors[f"{what} {type(error).__name__}"] += 1
            else:
                if answer.status_code < 500:
                    return answer
                self.stats.errors[f"{what} HTTP {answer.status_code}"] += 1
            if time.monotonic() - started > self.args.give_up_after:
                return None

    async def load_page(self, kind: str) -> bool:
        page = await self._retrying(
            lambda: self.client.get(f"/rate/{SLUG}", headers={"Accept": "text/html"}), "GET"
        )
        if page is None or page.status_code != 200:
            if page is not None:
                self.stats.errors[f"GET page HTTP {page.status_code}"] += 1
            return False
        if not self._read_pair(page.text):
            self.stats.out_of_pairs += 1
            return False
        return True

    async def run(self) -> None:
        if not await self.load_page("first"):
            return
        while time.monotonic() < self.deadline:
            if self.args.think_ms:
                await asyncio.sleep(self.args.think_ms / 1000)
            assignment = self.assignment
            data = {"assignment_id": str(assignment), "pick": str(self.rng.choice(PICKS)), "rationale": ""}
            headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf}
            answer = await self._retrying(
                lambda d=data, h=headers: self.client.post(f"/rate/{SLUG}/judgments", data=d, headers=h),
                "POST",
            )
            if answer is None:
                self.stats.gave_up += 1  # stored or not: nobody was told
                return
            if answer.status_code == 200:
                if assignment not in self.acked:
                    self.acked.add(assignment)
                    self.stats.acknowledged += 1
                if "That answer was already saved." in answer.text:
                    self.stats.already_saved += 1
            else:
                self.stats.errors[f"POST HTTP {answer.status_code}"] += 1
            if not self._read_pair(answer.text) and not await self.load_page("again"):
                return


# --- the faults -----------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # "kill web" or "restart PostgreSQL"
    at_s: float  # seconds into the load
    downtime_s: float  # until /healthz answered 200 again (it queries the database)
    detail: str = ""


async def _wait_healthy(base_url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as probe:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await probe.get(base_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base_url} did not answer /healthz within {timeout:.0f} s")


def pg_ready(url: URL) -> bool:
    """pg_isready when installed, else a connection attempt."""
    pg_isready = shutil.which("pg_isready")
    if pg_isready:
        command = [pg_isready, "-q", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
        return subprocess.run(command, check=False).returncode == 0
    engine = create_engine(url.set(database="postgres"))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - not up
        return False
    finally:
        engine.dispose()


def wait_pg(url: URL, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg_ready(url):
            return
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL did not come back within {timeout:.0f} s")


class Faulty:
    """The server under test, and the faults done to it."""

    def __init__(self, args: argparse.Namespace, url: URL, secret_key: str) -> None:
        self.args = args
        self.url = url
        self.secret_key = secret_key
        self.database_url = url.render_as_string(hide_password=False)
        self.servers: list[Server] = []
        self.faults: list[Fault] = []

    @property
    def server(self) -> Server:
        return self.servers[-1]

    def start(self) -> Server:
        server = Server(self.args, self.database_url, self.secret_key)
        self.args.port = server.port  # every restart listens where the raters' clients point
        self.servers.append(server)
        return server

    async def kill_web(self, at_s: float) -> None:
        old = self.server
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.proc.pid, signal.SIGKILL)  # the supervisor and its workers, at once
        old.proc.wait(timeout=30)
        old.stop()  # closes its log
        new = await asyncio.to_thread(self._start_ready)
        self.faults.append(
            Fault(
                "kill web (SIGKILL)",
                at_s,
                time.monotonic() - started,
                f"pid {old.proc.pid} -> {new.proc.pid}",
            )
        )

    def _start_ready(self) -> Server:
        for _attempt in range(20):
            server = self.start()
            try:
                server.wait_ready(timeout=90)
                return server
            except RuntimeError:
                # Most likely the port is not free again yet: try again a moment later.
                server.stop()
                time.sleep(0.5)
        raise RuntimeError(f"the server did not start again:\n{self.server.log_tail()}")

    async def restart_pg(self, at_s: float) -> None:
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run, shlex.split(self.args.pg_restart_command), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"`{self.args.pg_restart_command}` failed: {done.stderr or done.stdout}")
        await asyncio.to_thread(wait_pg, self.url)
        await _wait_healthy(self.server.base_url)
        self.faults.append(Fault("restart PostgreSQL", at_s, time.monotonic() - started))


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """The faults at evenly spaced moments, kinds interleaved (kill, restart, kill, ...)."""
    kinds = ["web"] * args.kills
    for i in range(args.pg_restarts):
        kinds.insert(min(len(kinds), 2 * i + 1), "pg")
    n = len(kinds)
    return [(args.duration * (i + 1) / (n + 1), kind) for i, kind in enumerate(kinds)]


async def run_load(args: argparse.Namespace, faulty: Faulty, seeded: Seeded) -> tuple[LoadStats, set[int]]:
    """The raters' load with the faults on schedule; returns the figures and the acknowledged
    assignment ids."""
    stats = LoadStats()
    raters = [
        FaultRater(name, args, faulty.server.base_url, stats, Clock(), random.Random(args.seed * 7919 + n))
        for n, name in enumerate(seeded.rater_names)
    ]
    gate = asyncio.Semaphore(args.login_concurrency)

    async def login(rater: FaultRater) -> None:
        async with gate:
            await rater.login()

    with console.status(f"Logging {len(raters)} raters in…"):
        await asyncio.gather(*(login(r) for r in raters))
    start = time.monotonic()
    for rater in raters:
        rater.deadline = start + args.duration
    tasks = [asyncio.create_task(r.run()) for r in raters]
    for at_s, kind in schedule(args):
        await asyncio.sleep(max(0.0, start + at_s - time.monotonic()))
        before = stats.acknowledged
        console.print(
            f"  t={time.monotonic() - start:6.1f} s  {kind:>3}: fault ({before:,} acknowledged so far)"
        )
        if kind == "web":
            await faulty.kill_web(time.monotonic() - start)
        else:
            await faulty.restart_pg(time.monotonic() - start)
        fault = faulty.faults[-1]
        console.print(f"             back after {fault.downtime_s:.1f} s")
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task.exception() is not None:
            stats.errors[f"client crash: {task.exception()!r}"[:120]] += 1
    await asyncio.gather(*(r.client.aclose() for r in raters))
    return stats, set().union(*(r.acked for r in raters))


# --- the check ------------------------------------------------------------------------------


def stuck_leases(url: URL, project_id: int) -> dict[str, int]:
    """Leases that would not end by themselves, or that should have ended already."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(text(sql), {"p": project_id}).scalar_one())

            return {
                "active with a stored judgment": one(
                    "SELECT count(*) FROM assignments a WHERE a.project_id = :p AND a.status = 'active' "
                    "AND EXISTS (SELECT 1 FROM judgments j WHERE j.comparison_id = a.comparison_id "
                    "AND j.rater_id = a.rater_id)"
                ),
                "active without an end in sight": one(
                    "SELECT count(*) FROM assignments a JOIN projects p ON p.id = a.project_id "
                    "WHERE a.project_id = :p AND a.status = 'active' AND (a.lease_expires_at IS NULL "
                    "OR a.lease_expires_at > now() + make_interval(secs => p.lease_seconds + 300))"
                ),
                "raters holding more than one": one(
                    "SELECT count(*) FROM (SELECT rater_id FROM assignments WHERE project_id = :p "
                    "AND status = 'active' GROUP BY rater_id HAVING count(*) > 1) d"
                ),
                "done without a judgment": one(
                    "SELECT count(*) FROM assignments a WHERE a.project_id = :p AND a.status = 'done' "
                    "AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.comparison_id = a.comparison_id "
                    "AND j.rater_id = a.rater_id)"
                ),
            }
    finally:
        engine.dispose()


@dataclass
class Result:
    raters: int
    duration_s: float
    acknowledged: int
    stored: int
    lost: int
    unknown: int  # re-sent until --give-up-after without an answer: stored or not
    doubled: int
    over_overlap: int
    counter_drift: int
    stuck_leases: int
    stuck_detail: dict[str, int]
    retries: int
    already_saved: int
    out_of_pairs: int
    errors: dict[str, int]
    faults: list[dict[str, Any]]
    server_tracebacks: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        too_many = self.stored > self.acknowledged + self.unknown
        return not (self.lost or self.doubled or self.over_overlap or self.counter_drift
                    or self.stuck_leases or too_many)  # fmt: skip


def report(result: Result) -> None:
    def mark(good: bool) -> str:
        return "[green]ok[/green]" if good else "[red]FAIL[/red]"

    console.print(f"\n[bold]Faults[/bold] ({result.raters} raters, {result.duration_s:g} s):")
    for fault in result.faults:
        detail = f" ({fault['detail']})" if fault["detail"] else ""
        console.print(
            f"  t={fault['at_s']:6.1f} s  {fault['kind']:<20} downtime {fault['downtime_s']:5.1f} s{detail}"
        )
    total = sum(f["downtime_s"] for f in result.faults)
    console.print(f"  downtime in all: {total:.1f} s")
    console.print("\n[bold]What the clients saw[/bold]:")
    console.print(
        f"  acknowledged {result.acknowledged:,}; retries {result.retries:,}; answered 'already "
        f"saved' {result.already_saved:,}; gave up (unknown) {result.unknown}; raters out of pairs "
        f"{result.out_of_pairs}"
    )
    for kind, count in sorted(result.errors.items(), key=lambda kv: -kv[1]):
        console.print(f"  {count:>7}  {kind}")
    if result.server_tracebacks:
        console.print(f"  server log: {sum(result.server_tracebacks.values())} tracebacks")
        for line, count in sorted(result.server_tracebacks.items(), key=lambda kv: -kv[1])[:8]:
            console.print(f"  {count:>7}  server: {line}")
    console.print("\n[bold]What PostgreSQL holds[/bold]:")
    console.print(
        f"  stored {result.stored:,} (acknowledged {result.acknowledged:,} + unknown {result.unknown})"
    )
    console.print(f"  lost (acknowledged, not stored): {result.lost}  {mark(not result.lost)}")
    console.print(f"  doubled ((comparison, rater) twice): {result.doubled}  {mark(not result.doubled)}")
    console.print(f"  over the overlap: {result.over_overlap}  {mark(not result.over_overlap)}")
    console.print(f"  judgment_count drift: {result.counter_drift}  {mark(not result.counter_drift)}")
    detail = ", ".join(f"{k} {v}" for k, v in result.stuck_detail.items())
    console.print(f"  stuck leases: {result.stuck_leases} ({detail})  {mark(not result.stuck_leases)}")
    console.print(f"\n[bold]{'all invariants hold' if result.ok else 'INVARIANT FAILED'}[/bold]")


def lost_judgments(url: URL, acked: set[int]) -> int:
    """Acknowledged assignments (each names its pair and its rater) without a stored judgment."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = set(
                conn.execute(
                    text(
                        "SELECT a.id FROM assignments a JOIN judgments j "
                        "ON j.comparison_id = a.comparison_id AND j.rater_id = a.rater_id"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    return len(acked - stored)


def run(args: argparse.Namespace) -> Result:
    """Seed, serve, load with faults, check. Raises RuntimeError on a setup failure."""
    url = make_url(normalize_url(args.database_url))
    if url.get_backend_name() != "postgresql":
        raise SystemExit("error: --database-url must be a PostgreSQL URL")
    if args.pg_restarts and not shutil.which(shlex.split(args.pg_restart_command)[0]):
        raise RuntimeError(f"cannot restart PostgreSQL: {args.pg_restart_command!r} is not installed")
    console.print(
        f"[bold]faults bench[/bold]: {args.raters} raters for {args.duration:g} s, {args.kills} SIGKILL(s) "
        f"of the web server, {args.pg_restarts} PostgreSQL restart(s), {args.workers} web workers, "
        f"database {url.render_as_string(hide_password=True)}"
    )
    create_database(url)
    faulty = Faulty(args, url, secrets.token_urlsafe(36))
    try:
        args.mode = "pairs"  # rating_load's seed: the raters here label pairs only
        seeded = seed(url, args)
        faulty.start().wait_ready()
        console.print(f"Server up: {faulty.server.command}")
        stats, acked = asyncio.run(run_load(args, faulty, seeded))
        faulty.server.stop()
        wait_pg(url)
        check = check_database(url, seeded.project_id, args.overlap)
        stuck = stuck_leases(url, seeded.project_id)
        lost = lost_judgments(url, acked)
        tracebacks: Counter[str] = Counter()
        for server in faulty.servers:
            tracebacks.update(server.log_problems())
        return Result(
            raters=args.raters,
            duration_s=args.duration,
            acknowledged=stats.acknowledged,
            stored=check.stored,
            lost=lost,
            unknown=stats.gave_up,
            doubled=check.doubled,
            over_overlap=check.over_overlap,
            counter_drift=check.counter_drift,
            stuck_leases=sum(stuck.values()),
            stuck_detail=stuck,
            retries=stats.retries,
            already_saved=stats.already_saved,
            out_of_pairs=stats.out_of_pairs,
            errors=dict(stats.errors),
            faults=[asdict(f) for f in faulty.faults],
            server_tracebacks=dict(tracebacks),
        )
    finally:
        for server in faulty.servers:
            if server.proc.poll() is None:
                server.stop()
        with contextlib.suppress(Exception):
            wait_pg(url)
        if args.keep:
            console.print(f"Kept database {url.database!r} (--keep).")
        else:
            drop_database(url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except RuntimeError as error:
        console.print(f"[red]setup failure: {error}[/red]")
        return 2
    report(result)
    if args.json:
        args.json.write_text(json.dumps(asdict(result) | {"ok": result.ok}, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
