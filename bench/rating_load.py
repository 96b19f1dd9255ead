"""Load test of the rating path: N simulated raters against the production launch on PostgreSQL.

What one run does, in order (``--help`` documents every option):

1. creates a fresh scratch database (default ``rlhf_bench_rating``), migrates it, and seeds one
   project (overlap 2 by default) with ``--pairs`` pairs by COPY, plus ``--raters`` rater accounts and one
   probe account (all share one password, hashed once);
2. starts ``rlhf serve --workers W`` as a subprocess with ENVIRONMENT=production and waits for
   ``/healthz``;
3. logs every rater in through the login form (one httpx client, one cookie jar per rater, or
   a minimal asyncio HTTP/1.1 client with ``--client raw``), then
   has each loop "submit the current pair -> receive the next" with HX-Request for a warm-up and
   ``--duration`` seconds, retrying a failed connection with the same assignment id as a browser
   user would;
4. stops the server and checks PostgreSQL against what the clients were told: every acknowledged
   judgment stored once, none doubled, no pair beyond its overlap, leases accounted for;
5. counts the SQL statements of one GET /rate/{slug} and one POST judgment in-process (TestClient,
   ``before_cursor_execute`` on ``app.state.engine``), with each statement's time, and times
   ``--single-user`` submits of that one rater alone;
6. measures raw PostgreSQL single-row INSERT throughput at the same concurrency (pgbench, or an
   asyncio psycopg loop when pgbench is missing) and prints judgments/s divided by it;
7. drops the scratch database (unless ``--keep``).

Ranking mode (``--mode rankings``, or ``both``, the default: pairs first, then rankings, in the
same run and on the same server): a second project whose task mix is ``rank`` holds
``--rankings`` rankings of ``--rank-k`` completions (K=4 by default); fresh clients of the same
raters loop "submit an order -> receive the next ranking" (an order in the workbench's notation,
shuffled, sometimes with a tie or an all-bad line) for the same warm-up and window, and the
rankings/s are printed with the pairs they imply (K(K-1)/2 each) next to the pair mode's
judgments/s, followed by the same kind of count check on the ranking tables.

The client runs on the same machine as the server and PostgreSQL, so the three share its cores:
the CPU use of each is measured over the timed window and printed with the results.

Cookies: with ENVIRONMENT=production the session cookie is ``Secure``. In production a TLS proxy
sits in front of uvicorn (``rlhf serve`` trusts X-Forwarded-Proto from 127.0.0.1); the bench plays
that proxy without the TLS: each rater's client addresses ``https://host:port`` (so its cookie
jar sends the Secure cookie, as a browser does) and its transport sends the request as plain HTTP
to the same port with ``X-Forwarded-Proto: https``.

Not a test: it prints figures. Exit status 1 when the stored judgments disagree with the
acknowledged ones (lost, doubled or over the overlap), 2 on a setup failure, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from _seeding import copy_rows
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import URL, make_url

from app.auth import hash_password
from app.db import normalize_url
from app.models import Comparison, Completion, Project, Prompt, Ranking, Role, User
from app.services.content import messages_hash, text_hash

ROOT = Path(__file__).resolve().parent.parent
RLHF = ROOT / ".venv" / "bin" / "rlhf"
# Not plain `rlhf_bench`: bench/export_bench.py drops and recreates that one unconditionally.
# BENCH_POSTGRES: the PostgreSQL server of the benches (scripts/bench_smoke points it at its own).
DEFAULT_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432") + "/rlhf_bench_rating"
DB_COMMENT = "scratch database of bench/rating_load.py (dropped after each run)"
SLUG = "bench"
RANK_SLUG = "bench-rank"  # the ranking mode's project (task mix: rank)
PASSWORD = "bench-rater-password"  # one password for every bench account: hashed once
PROBE = "bench-probe"  # the account the query count logs in as (not one of the load raters)
PICKS = (-2, -1, 0, 1, 2)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ASSIGNMENT = re.compile(r'name="assignment_id" value="(\d+)"')
_EMPTY = 'data-testid="empty"'
_ALREADY_SAVED = "That answer was already saved."
_ORDER_SAVED = "That order was already saved."
LETTERS = "ABCDEFGHI"

# Wide enough for the statement listing when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


# --- options --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/rating_load.py",
        description="Load test of the rating path (submit a judgment, receive the next pair) "
        "through `rlhf serve` on PostgreSQL, with a count check, SQL statements per request "
        "and raw PostgreSQL insert throughput for scale.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="PostgreSQL URL of the scratch database to create; it must not exist, or must be "
        "one this bench created (a leftover of --keep), which is dropped first.",
    )
    p.add_argument("--raters", type=int, default=64, help="Concurrent simulated raters.")
    p.add_argument("--pairs", type=int, default=200_000, help="Pairs (comparisons) to seed in the project.")
    p.add_argument("--overlap", type=int, default=2, help="Distinct raters wanted per pair (and ranking).")
    p.add_argument(
        "--mode",
        choices=("pairs", "rankings", "both"),
        default="both",
        help="What the raters do: judge pairs, order rankings, or both one after the other (the "
        "rankings' figures printed next to the pairs').",
    )
    p.add_argument("--rankings", type=int, default=50_000, help="Rankings to seed for the ranking mode.")
    p.add_argument("--rank-k", type=int, default=4, help="Completions per ranking (3 to 9).")
    p.add_argument(
        "--completion-chars",
        type=int,
        default=600,
        help="Approximate length of each seeded completion (markdown: paragraphs, lists, code).",
    )
    p.add_argument("--duration", type=float, default=30.0, help="Timed window, in seconds.")
    p.add_argument("--warmup", type=float, default=5.0, help="Seconds of load before the timed window.")
    p.add_argument("--workers", type=int, default=2, help="Web processes of `rlhf serve`.")
    p.add_argument("--host", default="127.0.0.1", help="Address the server listens on.")
    p.add_argument("--port", type=int, default=0, help="Server port (0: pick a free one).")
    p.add_argument(
        "--reload-every",
        type=int,
        default=25,
        help="Each rater reloads the full page (GET /rate/{slug}) after this many judgments, "
        "as a browser user sometimes does; 0: only the first page load.",
    )
    p.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="Pause between receiving a pair and submitting it (0: closed loop, maximum load).",
    )
    p.add_argument(
        "--login-concurrency",
        type=int,
        default=4,
        help="Logins in flight at once (argon2 verification is deliberately slow).",
    )
    p.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx: one httpx.AsyncClient per rater (about 1.3 ms CPU per request here); raw: "
        "a minimal asyncio HTTP/1.1 client (about 0.04 ms), for rates where the client would "
        "otherwise take the cores the server needs.",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds.")
    p.add_argument(
        "--max-retries",
        type=int,
        default=5,
        help="Re-sends of the same judgment after a connection error or a 5xx.",
    )
    p.add_argument(
        "--raw-seconds",
        type=float,
        default=10.0,
        help="Length of the raw PostgreSQL insert measurement (0: skip it).",
    )
    p.add_argument(
        "--raw-method",
        choices=("auto", "pgbench", "python"),
        default="auto",
        help="Raw insert measurement: pgbench, an asyncio psycopg loop, or pgbench when found.",
    )
    p.add_argument(
        "--no-query-count",
        action="store_true",
        help="Skip the in-process count of SQL statements per request.",
    )
    p.add_argument(
        "--single-user",
        type=int,
        default=100,
        metavar="N",
        help="After the statement count, the probe submits N judgments one after another "
        "in-process: wall and CPU time per submit without concurrency (0: skip).",
    )
    p.add_argument(
        "--show-sql",
        type=int,
        default=160,
        help="Characters of each counted statement to print (0: print counts only).",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="Sample every server worker with py-spy during the timed window (it must be "
        "installed in the venv); raw collapsed stacks go to DIR and a summary is printed. "
        "Sampling costs CPU: compare throughput only between runs without it.",
    )
    p.add_argument("--profile-rate", type=int, default=97, help="py-spy samples per second per worker.")
    p.add_argument(
        "--profile-threads",
        choices=("gil", "active"),
        default="gil",
        help="gil: sample only the thread holding the GIL (Python CPU time, robust when the "
        "machine is oversubscribed); active: every thread py-spy deems not idle (also counts "
        "runnable threads waiting for a core and some network waits).",
    )
    p.add_argument(
        "--setup-sql",
        action="append",
        default=[],
        metavar="SQL",
        help="SQL run on the scratch database after seeding, before the server starts "
        "(repeatable), for what-if experiments such as a candidate index or "
        "`ALTER DATABASE rlhf_bench_rating SET jit = off`; printed with the results.",
    )
    p.add_argument("--seed", type=int, default=1, help="Seed of the data and of the picks.")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="A tiny run (4 raters, 2 workers, 600 pairs, 300 rankings, seconds) that fails (exit 1) "
        "on a server traceback or no judgment or order stored too: checks that the bench runs.",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="Keep the scratch database afterwards (a later run drops and recreates it).",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.raters, args.workers, args.pairs, args.completion_chars = 4, 2, 600, 200
        args.rankings = 300
        args.warmup, args.duration, args.raw_seconds, args.single_user = 1.0, 3.0, 1.0, 5
    if args.raters < 1 or args.pairs < 1 or args.overlap < 1 or args.workers < 1:
        p.error("--raters, --pairs, --overlap and --workers must be at least 1")
    if args.duration <= 0:
        p.error("--duration must be positive")
    if not 3 <= args.rank_k <= 9 or args.rankings < 1:
        p.error("--rank-k must be from 3 to 9 and --rankings at least 1")
    return args


# --- scratch database -----------------------------------------------------------------------


def _admin_engine(url: URL):  # type: ignore[no-untyped-def]
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def create_database(url: URL) -> None:
    name = url.database
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SystemExit(f"error: give the scratch database a plain name, not {name!r}")
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            comment = conn.execute(
                text(
                    "SELECT coalesce(shobj_description(oid, 'pg_database'), '') "
                    "FROM pg_database WHERE datname = :n"
                ),
                {"n": name},
            ).scalar_one_or_none()
            if comment is not None:
                if comment != DB_COMMENT:
                    raise SystemExit(
                        f"error: database {name!r} exists and was not made by this bench; "
                        "choose another name with --database-url"
                    )
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{DB_COMMENT}'"))
    finally:
        engine.dispose()


def drop_database(url: URL) -> None:
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        engine.dispose()


def _libpq_uri(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# --- seeding --------------------------------------------------------------------------------

_TOPICS = (
    "binary search", "a sourdough starter", "photosynthesis", "TCP congestion control",
    "the French Revolution", "compound interest", "garbage collection", "plate tectonics",
    "a job interview", "unit testing", "the water cycle", "public-key cryptography",
    "training a puppy", "index funds", "the Krebs cycle", "a cover letter", "Bayes' theorem",
    "container orchestration", "marathon training", "the Doppler effect",
)  # fmt: skip
_SENTENCES = (
    "The short answer is that it depends on the constraints you care about most.",
    "Start with the simplest version that works, then measure before you optimise.",
    "A common mistake is to skip the edge cases, which is where most bugs hide.",
    "Think of it as a trade-off between how fast you get an answer and how sure you are of it.",
    "Historically this idea appeared in several places at once, under different names.",
    "In practice, **consistency** matters more than any single clever trick.",
    "If you only remember one thing, remember that the inputs decide the outcome.",
    "The key quantity grows with the square of the size, so doubling it costs four times more.",
    "Most guides get this backwards: the order of the steps is what makes it work.",
    "You can check the result by working through a small example by hand.",
    "There are three parts: the setup, the repeated step, and the stopping condition.",
    "Be careful with `None` values here, since they silently propagate.",
    "Experts disagree on the details, but the overall picture is well established.",
    "A useful rule of thumb is to budget twice the time you first estimate.",
)
_CODE = "```python\ndef step(state):\n    state = update(state)\n    return state\n```"


def _completion(rng: random.Random, i: int, side: str, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        kind = rng.random()
        if kind < 0.15:
            block = "\n".join(f"- {rng.choice(_SENTENCES)}" for _ in range(rng.randint(2, 4)))
        elif kind < 0.22:
            block = _CODE
        else:
            block = " ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(2, 4)))
        parts.append(block)
        size += len(block) + 2
    parts.append(f"_(pair {i}, answer {side})_")
    return "\n\n".join(parts)


def _messages(rng: random.Random, i: int) -> list[dict[str, str]]:
    topic = rng.choice(_TOPICS)
    question = f"Question {i}: can you explain {topic} to me, briefly and with an example?"
    if rng.random() < 0.2:  # some multi-turn conversations
        return [
            {"role": "user", "content": f"I am learning about {topic}."},
            {"role": "assistant", "content": "Great, what would you like to know?"},
            {"role": "user", "content": question},
        ]
    return [{"role": "user", "content": question}]


@dataclass
class Seeded:
    project_id: int
    rater_names: list[str]
    rater_ids: list[int]
    rank_project_id: int | None = None


def seed(url: URL, args: argparse.Namespace) -> Seeded:
    import psycopg

    from app import migrations

    sa_url = url.render_as_string(hide_password=False)
    with console.status("Migrating the scratch database…"):
        migrations.upgrade(sa_url)

    engine = create_engine(sa_url)
    password_hash = hash_password(PASSWORD)  # once: argon2 is slow on purpose
    now = datetime.now(UTC)
    rater_names = [f"bench-rater-{n:03d}" for n in range(1, args.raters + 1)]
    with engine.begin() as conn:
        project_id = conn.execute(
            insert(Project.__table__).returning(Project.__table__.c.id),
            {
                "slug": SLUG,
                "name": "Bench: rating load",
                "instructions": "Pick the **better** answer.",
                "overlap": args.overlap,
                "scale": "five",
                "flags": [],
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        users = User.__table__
        conn.execute(
            insert(users),
            [
                {"username": name, "password_hash": password_hash, "role": Role.rater.value,
                 "created_at": now}
                for name in [*rater_names, PROBE]
            ],
        )  # fmt: skip
        ids = {name: id_ for name, id_ in conn.execute(text("SELECT username, id FROM users"))}
    engine.dispose()

    n = args.pairs
    rng = random.Random(args.seed)
    chunk = 5_000
    columns = [
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    started = time.perf_counter()
    with (
        psycopg.connect(_libpq_uri(url)) as pg,
        pg.cursor() as cur,
        Progress(*columns, console=console) as progress,
    ):
        t_prompts = progress.add_task("prompts", total=n)
        t_completions = progress.add_task("completions", total=2 * n)
        t_pairs = progress.add_task("pairs", total=n)

        # Explicit ids (1..n, 1..2n) in a fresh database: the sequences are set afterwards.
        def prompts() -> Iterator[dict[str, Any]]:
            for i in range(1, n + 1):
                messages = _messages(rng, i)
                yield {"id": i, "project_id": project_id, "messages": messages,
                       "content_hash": messages_hash(messages), "created_at": now}  # fmt: skip
                if i % chunk == 0 or i == n:
                    progress.update(t_prompts, completed=i)

        def completions() -> Iterator[dict[str, Any]]:
            for i in range(1, n + 1):
                for k, side in ((0, "a"), (1, "b")):
                    body = _completion(rng, i, side, args.completion_chars)
                    yield {"id": 2 * i - 1 + k, "prompt_id": i, "text": body, "content_hash": text_hash(body),
                           "model_name": f"bench-model-{side}", "created_at": now}  # fmt: skip
                if i % chunk == 0 or i == n:
                    progress.update(t_completions, completed=2 * i)

        def pairs() -> Iterator[dict[str, Any]]:
            for i in range(1, n + 1):
                yield {"id": i, "project_id": project_id, "prompt_id": i, "completion_a_id": 2 * i - 1,
                       "completion_b_id": 2 * i, "kind": "regular", "created_at": now}  # fmt: skip
                if i % chunk == 0 or i == n:
                    progress.update(t_pairs, completed=i)

        copy_rows(cur, Prompt.__table__, prompts())
        copy_rows(cur, Completion.__table__, completions())
        copy_rows(cur, Comparison.__table__, pairs())
        for table in ("prompts", "completions", "comparisons"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        pg.commit()
    console.print(
        f"Seeded {n:,} pairs ({2 * n:,} completions of ~{args.completion_chars} chars), "
        f"{args.raters} raters + 1 probe in {time.perf_counter() - started:.1f} s."
    )
    rank_project_id = seed_rankings(url, args, rng, now) if args.mode != "pairs" else None
    with (
        console.status("VACUUM ANALYZE (fresh planner statistics)…"),
        psycopg.connect(_libpq_uri(url), autocommit=True) as pg,
    ):
        pg.execute("VACUUM (ANALYZE)")
    return Seeded(
        project_id=project_id,
        rater_names=rater_names,
        rater_ids=[ids[name] for name in rater_names],
        rank_project_id=rank_project_id,
    )


def seed_rankings(url: URL, args: argparse.Namespace, rng: random.Random, now: datetime) -> int:
    """The ranking mode's project: `--rankings` rankings of `--rank-k` new completions each."""
    import psycopg

    engine = create_engine(url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        project_id = conn.execute(
            insert(Project.__table__).returning(Project.__table__.c.id),
            {"slug": RANK_SLUG, "name": "Bench: ranking load", "instructions": "Order the answers.",
             "overlap": args.overlap, "scale": "five", "flags": [], "task_mix": {"rank": 1.0},
             "rank_k": args.rank_k, "created_at": now, "updated_at": now},
        ).scalar_one()  # fmt: skip
    engine.dispose()
    k, count = args.rank_k, args.rankings
    started = time.perf_counter()
    with psycopg.connect(_libpq_uri(url)) as pg, pg.cursor() as cur:
        first_prompt = int(cur.execute("SELECT coalesce(max(id), 0) + 1 FROM prompts").fetchone()[0])
        first_completion = int(cur.execute("SELECT coalesce(max(id), 0) + 1 FROM completions").fetchone()[0])

        def prompts() -> Iterator[dict[str, Any]]:
            for i in range(count):
                messages = _messages(rng, 1_000_000 + i)
                yield {"id": first_prompt + i, "project_id": project_id, "messages": messages,
                       "content_hash": messages_hash(messages), "created_at": now}  # fmt: skip

        def completions() -> Iterator[dict[str, Any]]:
            for i in range(count):
                for j in range(k):
                    body = _completion(rng, i, LETTERS[j].lower(), args.completion_chars)
                    yield {"id": first_completion + i * k + j, "prompt_id": first_prompt + i, "text": body,
                           "content_hash": text_hash(body), "model_name": f"bench-model-{j}",
                           "created_at": now}  # fmt: skip

        def rankings() -> Iterator[dict[str, Any]]:
            for i in range(count):
                ids = [first_completion + i * k + j for j in range(k)]
                yield {"id": i + 1, "project_id": project_id, "prompt_id": first_prompt + i,
                       "kind": "regular", "completion_ids": ids, "created_at": now}  # fmt: skip

        copy_rows(cur, Prompt.__table__, prompts())
        copy_rows(cur, Completion.__table__, completions())
        copy_rows(cur, Ranking.__table__, rankings())
        for table in ("prompts", "completions", "rankings"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        pg.commit()
    console.print(
        f"Seeded {count:,} rankings of K={k} ({count * k:,} completions) in "
        f"{time.perf_counter() - started:.1f} s."
    )
    return int(project_id)


def run_setup_sql(url: URL, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(_libpq_uri(url), autocommit=True) as pg:
        for statement in statements:
            console.print(f"[yellow]setup SQL (what-if):[/yellow] {statement}")
            pg.execute(statement)  # type: ignore[arg-type]
        pg.execute("ANALYZE")


# --- the server -----------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Server:
    """`rlhf serve` in its own process group, stopped gracefully (then by force) at the end."""

    def __init__(self, args: argparse.Namespace, database_url: str, secret_key: str) -> None:
        self.host = args.host
        self.port = args.port or _free_port(args.host)
        self.workers = args.workers
        self.database_url = database_url
        self.log_path = Path(tempfile.mkstemp(prefix="rlhf-bench-server-", suffix=".log")[1])
        env = dict(os.environ)
        env.update(DATABASE_URL=database_url, ENVIRONMENT="production", SECRET_KEY=secret_key)
        self._log = self.log_path.open("wb")
        command = [str(RLHF), "serve", "--host", self.host, "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        self.command = " ".join(command)
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                answered = httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200
                # Every worker must be up, not only the first one to answer.
                if answered and len(self.worker_pids()) >= self.workers:
                    return
            time.sleep(0.25)
        raise RuntimeError("the server did not answer /healthz in time")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (multiprocessing spawn children of the supervisor); with
        one worker, uvicorn serves in the launched process itself."""
        if self.workers == 1:
            return [self.proc.pid] if self.proc.poll() is None else []
        pids = []
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        for pid in map(int, children.split()):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(pid)
        return pids

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> Counter[str]:
        """The last line of each traceback in the server's log, counted."""
        problems: Counter[str] = Counter()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return problems
        for line in lines:
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*", line):
                problems[re.sub(r" \(Background on this error.*", "", line)[:160]] += 1
        return problems

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # our own group, by its id
                self.proc.wait(timeout=10)
        self._log.close()


# --- CPU accounting -------------------------------------------------------------------------

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def _postgres_pids(database: str) -> list[int]:
    """PostgreSQL's own processes and the backends of `database` (not other databases')."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            backend = "(" in title or "[local]" in title  # "user db 127.0.0.1(port) state"
            if not backend or f" {database} " in title:
                pids.append(int(entry))
    return pids


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds` (other work on the machine skews the figures)."""
    a = CpuSnapshot.take([], "")
    time.sleep(seconds)
    b = CpuSnapshot.take([], "")
    return (b.busy - a.busy) / ((b.at - a.at) * (os.cpu_count() or 1))


def _cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := _proc_cpu(pid)) is not None}


@dataclass
class CpuSnapshot:
    at: float
    workers: dict[int, float]
    postgres: dict[int, float]
    client: float
    busy: float  # machine-wide busy seconds (all cores)

    @classmethod
    def take(cls, worker_pids: list[int], database: str) -> CpuSnapshot:
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in cpu]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        times = os.times()
        return cls(
            at=time.perf_counter(),
            workers=_cpu_of(worker_pids),
            postgres=_cpu_of(_postgres_pids(database)) if database else {},
            client=times.user + times.system,
            busy=(sum(ticks[:8]) - idle) / _CLK,
        )


@dataclass
class CpuUse:
    wall: float
    workers: dict[int, float]
    postgres: float
    client: float
    machine: float
    gone_workers: list[int]  # died (or were killed) during the window: their CPU is unknown

    @property
    def other(self) -> float:
        return max(0.0, self.machine - sum(self.workers.values()) - self.postgres - self.client)


def cpu_use(a: CpuSnapshot, b: CpuSnapshot) -> CpuUse:
    postgres = sum(b.postgres[p] - a.postgres.get(p, 0.0) for p in b.postgres)
    return CpuUse(
        wall=b.at - a.at,
        # A worker started during the window (a replacement) counts from zero.
        workers={p: b.workers[p] - a.workers.get(p, 0.0) for p in b.workers},
        postgres=postgres,
        client=b.client - a.client,
        machine=b.busy - a.busy,
        gone_workers=[p for p in a.workers if p not in b.workers],
    )


# --- the raters -----------------------------------------------------------------------------


class _TlsProxyTransport(httpx.AsyncHTTPTransport):
    """Plays the TLS proxy of production: the client (and its cookie jar) sees https, uvicorn
    gets plain HTTP with X-Forwarded-Proto, which `rlhf serve` trusts from 127.0.0.1."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http")
        request.headers["X-Forwarded-Proto"] = "https"
        return await super().handle_async_request(request)


@dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str]
    text: str


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, with a cookie jar of its own.

    About 30 times less CPU per request than httpx: for load near the target on a machine where
    the client shares the cores with the server. Errors are raised as httpx.TransportError
    subclasses so that the raters handle both clients alike.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str] | None = None) -> RawResponse:
        return await self._request("GET", path, b"", headers or {})

    async def post(
        self, path: str, data: dict[str, str], headers: dict[str, str] | None = None
    ) -> RawResponse:
        body = urlencode(data).encode()
        extra = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return await self._request("POST", path, body, extra)

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> RawResponse:
        try:
            return await asyncio.wait_for(self._exchange(method, path, body, headers), timeout=self.timeout)
        except TimeoutError:
            self._close()
            raise httpx.ReadTimeout(f"{method} {path}: no answer in {self.timeout} s") from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            self._close()
            raise httpx.ReadError(f"{method} {path}: {error!r}") from None

    async def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> RawResponse:
        if self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            except OSError as error:
                raise httpx.ConnectError(f"{self.host}:{self.port}: {error!r}") from None
        assert self._reader is not None and self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += ["User-Agent: rlhf-bench-raw", "X-Forwarded-Proto: https"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        received: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, cookie = pair.partition("=")
                if "expires=Thu, 01 Jan 1970" in value:
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = cookie.strip()
            elif name:
                received[name] = value
        if received.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
                chunks.append(await self._reader.readexactly(size + 2))
            await self._reader.readuntil(b"\r\n")
            data = b"".join(c[:-2] for c in chunks)
        else:
            data = await self._reader.readexactly(int(received.get("content-length", "0")))
        if received.get("connection", "").lower() == "close":
            self._close()
        return RawResponse(status, received, data.decode("utf-8", errors="replace"))


@dataclass
class Clock:
    start: float = 0.0
    window_start: float = 0.0
    end: float = 0.0

    def in_window(self, t: float) -> bool:
        return self.window_start <= t < self.end


@dataclass
class LoadStats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    acknowledged: int = 0  # distinct judgments the clients were told were stored
    acknowledged_in_window: int = 0
    already_saved: int = 0  # 200 answers to a repeat of an acknowledged pair
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    out_of_pairs: int = 0
    gave_up: int = 0  # judgments whose every retry failed: stored or not, nobody knows
    logged_in: int = 0


def random_order(rng: random.Random, k: int) -> str:
    """A rater's order of K responses in the workbench's notation: shuffled, a tie in a third of
    them, the all-bad line in another third."""
    letters = list(LETTERS[:k])
    rng.shuffle(letters)
    parts = letters[:]
    if rng.random() < 1 / 3:
        parts[0:2] = [f"{letters[0]}={letters[1]}"]
    if rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), "|")
    return " ".join(parts)


class Rater:
    def __init__(
        self,
        name: str,
        args: argparse.Namespace,
        base_url: str,
        stats: LoadStats,
        clock: Clock,
        rng: random.Random,
        mode: str = "pairs",
    ) -> None:
        self.name = name
        self.mode = mode
        self.slug = RANK_SLUG if mode == "rankings" else SLUG
        self.post_path = f"/rate/{self.slug}/rankings" if mode == "rankings" else f"/rate/{SLUG}/judgments"
        self.post_kind = "POST ranking" if mode == "rankings" else "POST judgment"
        self.args = args
        self.stats = stats
        self.clock = clock
        self.rng = rng
        self.client: httpx.AsyncClient | RawClient
        if args.client == "raw":
            address = httpx.URL(base_url)
            self.client = RawClient(str(address.host), int(address.port or 80), args.timeout)
        else:
            self.client = httpx.AsyncClient(
                base_url=base_url.replace("http://", "https://", 1),  # Secure cookies are sent
                transport=_TlsProxyTransport(),
                headers={"User-Agent": "rlhf-bench"},
                timeout=args.timeout,
                follow_redirects=False,
            )
        self.csrf = ""
        self.assignment: int | None = None
        self.acked: set[int] = set()

    async def login(self) -> None:
        page = await self.client.get("/login")
        token = _CSRF.search(page.text)
        if page.status_code != 200 or not token:
            raise RuntimeError(f"{self.name}: GET /login answered {page.status_code}")
        answer = await self.client.post(
            "/login",
            data={"username": self.name, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        if answer.status_code != 303:
            raise RuntimeError(f"{self.name}: POST /login answered {answer.status_code}")
        self.stats.logged_in += 1

    def _read_pair(self, html: str) -> bool:
        """Take the next pair (and the CSRF token) from a page or fragment; False: none."""
        token = _CSRF.search(html)
        if token:
            self.csrf = token.group(1)
        match = _ASSIGNMENT.search(html)
        self.assignment = int(match.group(1)) if match else None
        return self.assignment is not None

    async def load_page(self, kind: str) -> bool:
        started = time.perf_counter()
        page = None
        for attempt in range(self.args.max_retries + 1):
            if attempt:  # the user presses reload
                self.stats.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            try:
                page = await self.client.get(f"/rate/{self.slug}", headers={"Accept": "text/html"})
            except httpx.TransportError as error:
                self.stats.errors[f"GET {type(error).__name__}"] += 1
                continue
            if page.status_code < 500:
                break
            self.stats.errors[f"GET page HTTP {page.status_code}"] += 1
        if page is None or page.status_code >= 500:
            return False
        if kind == "GET page (first)" or self.clock.in_window(started):
            self.stats.latency[kind].append(time.perf_counter() - started)
        if page.status_code != 200:
            self.stats.errors[f"GET page HTTP {page.status_code}"] += 1
            return False
        if not self._read_pair(page.text):
            if _EMPTY in page.text:
                self.stats.out_of_pairs += 1
            return False
        return True

    async def _post_with_retries(self, data: dict[str, Any]) -> httpx.Response | None:
        headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf}
        for attempt in range(self.args.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            try:
                answer = await self.client.post(self.post_path, data=data, headers=headers)
            except httpx.TransportError as error:
                self.stats.errors[f"POST {type(error).__name__}"] += 1
                continue
            if answer.status_code >= 500:
                self.stats.errors[f"POST HTTP {answer.status_code}"] += 1
                continue
            return answer
        return None

    async def run(self) -> None:
        if not await self.load_page("GET page (first)"):
            return
        since_reload = 0
        while True:
            if self.args.think_ms:
                await asyncio.sleep(self.args.think_ms / 1000)
            started = time.perf_counter()
            if started >= self.clock.end:
                return
            assignment = self.assignment
            assert assignment is not None
            data = {"assignment_id": str(assignment), "csrf_token": self.csrf}
            if self.mode == "rankings":
                data["order"] = random_order(self.rng, self.args.rank_k)
            else:
                data.update(pick=str(self.rng.choice(PICKS)), rationale="")
            answer = await self._post_with_retries(data)
            done = time.perf_counter()
            if answer is None:
                self.stats.gave_up += 1
                return
            if self.clock.in_window(started):
                self.stats.latency[self.post_kind].append(done - started)
            if answer.status_code == 200:
                if assignment not in self.acked:
                    self.acked.add(assignment)
                    self.stats.acknowledged += 1
                    if self.clock.in_window(done):
                        self.stats.acknowledged_in_window += 1
                if _ALREADY_SAVED in answer.text or _ORDER_SAVED in answer.text:
                    self.stats.already_saved += 1
            else:
                self.stats.errors[f"POST HTTP {answer.status_code}"] += 1
            if not self._read_pair(answer.text):
                if _EMPTY in answer.text:
                    self.stats.out_of_pairs += 1
                    return
                # No pair in the answer (e.g. a 401 or 403): reload the page like a browser user.
                if not await self.load_page("GET page"):
                    return
                continue
            since_reload += 1
            if self.args.reload_every and since_reload >= self.args.reload_every:
                since_reload = 0
                if not await self.load_page("GET page"):
                    return


async def run_load(
    args: argparse.Namespace, server: Server, seeded: Seeded, profile_dir: Path | None, mode: str = "pairs"
) -> tuple[LoadStats, CpuUse, list[Path]]:
    stats = LoadStats()
    clock = Clock()
    raters = [
        Rater(name, args, server.base_url, stats, clock, random.Random(args.seed * 7919 + n), mode)
        for n, name in enumerate(seeded.rater_names)
    ]
    unit = "rankings" if mode == "rankings" else "judgments"
    gate = asyncio.Semaphore(args.login_concurrency)

    async def login(rater: Rater) -> Rater | None:
        async with gate:
            for attempt in range(3):
                try:
                    await rater.login()
                    return rater
                except (httpx.TransportError, RuntimeError) as error:
                    stats.errors[f"login attempt failed: {error!r}"[:120]] += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
        await rater.client.aclose()
        return None

    with console.status(f"Logging {len(raters)} raters in through the form…"):
        logged_in = await asyncio.gather(*(login(r) for r in raters))
    if len(raters) != stats.logged_in:
        console.print(f"[yellow]{len(raters) - stats.logged_in} raters could not log in.[/yellow]")
    raters = [r for r in logged_in if r is not None]

    worker_pids = server.worker_pids()
    db = str(make_url(server.database_url).database)
    clock.start = time.perf_counter()
    clock.window_start = clock.start + args.warmup
    clock.end = clock.window_start + args.duration
    tasks = [asyncio.create_task(r.run()) for r in raters]
    profiles: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("warm-up", total=args.warmup + args.duration, info="")
        first: CpuSnapshot | None = None
        window_cpu: CpuUse | None = None
        last_count, last_t = 0, time.perf_counter()
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            now = time.perf_counter()
            if first is None and now >= clock.window_start:
                first = CpuSnapshot.take(worker_pids, db)
                if profile_dir is not None:
                    spies, profiles = start_profilers(profile_dir, worker_pids, args)
            rate = (stats.acknowledged - last_count) / (now - last_t)
            last_count, last_t = stats.acknowledged, now
            phase = "warm-up" if now < clock.window_start else "timed" if now < clock.end else "drain"
            progress.update(
                bar,
                description=phase,
                completed=min(now - clock.start, args.warmup + args.duration),
                info=f"{stats.acknowledged:>7} {unit}  {rate:>7.0f}/s",
            )
            if now >= clock.end and first is not None and window_cpu is None:
                now_pids = sorted(set(worker_pids) | set(server.worker_pids()))
                window_cpu = cpu_use(first, CpuSnapshot.take(now_pids, db))
    replaced = sorted(set(worker_pids) - set(server.worker_pids()))
    if replaced:
        stats.errors[f"server workers replaced during the run: {replaced}"] += len(replaced)
    for task in tasks:
        if task.exception() is not None:
            stats.errors[f"client crash: {task.exception()!r}"[:120]] += 1
    await asyncio.gather(*(r.client.aclose() for r in raters))
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.terminate()
    if window_cpu is None:  # every rater stopped early (out of pairs, errors)
        window_cpu = cpu_use(first or CpuSnapshot.take(worker_pids, db), CpuSnapshot.take(worker_pids, db))
    return stats, window_cpu, profiles


# --- profiling ------------------------------------------------------------------------------


def start_profilers(
    directory: Path, pids: list[int], args: argparse.Namespace
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    spy = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
    if spy is None:
        console.print("[yellow]py-spy not found: no profile (pip install py-spy)[/yellow]")
        return [], []
    directory.mkdir(parents=True, exist_ok=True)
    procs, outputs = [], []
    for pid in pids:
        out = directory / f"worker-{pid}.txt"
        command = [spy, "record", "--pid", str(pid), "--rate", str(args.profile_rate)]
        command += ["--duration", str(max(1, int(args.duration))), "--format", "raw"]
        command += ["--output", str(out), "--nonblocking"]
        if args.profile_threads == "gil":
            command.append("--gil")
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        outputs.append(out)
    return procs, outputs


_BUCKETS = (
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("psycopg (driver)", ("psycopg/", "psycopg_binary", "psycopg_pool")),
    ("Jinja2 templates", ("jinja2/", ".html")),
    ("markdown + nh3", ("markdown_it/", "mdurl/", "nh3", "app/services/render.py")),
    ("session cookie / itsdangerous", ("itsdangerous/", "starlette/middleware/sessions.py")),
    ("form parsing", ("multipart/", "python_multipart/", "starlette/formparsers.py")),
    ("pydantic", ("pydantic/", "pydantic_core")),
    ("FastAPI / Starlette", ("fastapi/", "starlette/")),
    ("uvicorn / HTTP", ("uvicorn/", "httptools/", "h11/")),
    ("anyio threadpool", ("anyio/",)),
    ("app code", ("app/",)),
)


def _bucket(frame: str) -> str | None:
    location = frame[frame.rfind("(") + 1 :]
    for name, needles in _BUCKETS:
        if any(n in location for n in needles):
            return name
    return None


def summarize_profiles(paths: list[Path], gil: bool, top: int = 25) -> None:
    samples = 0
    by_bucket: Counter[str] = Counter()
    inclusive_app: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            console.print(f"[yellow]no profile written at {path}[/yellow]")
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
            samples += count
            self_time[frames[-1]] += count
            # Attribute the sample to the innermost frame that belongs to a known component
            # (stdlib frames count for the library that called them).
            owner = next((b for f in reversed(frames) if (b := _bucket(f))), "other (stdlib)")
            by_bucket[owner] += count
            for f in set(frames):
                if re.search(r"\((?:.*/)?app/", f):
                    inclusive_app[f] += count
    if not samples:
        return
    console.print(
        f"\n[bold]Server CPU profile[/bold] (py-spy, {'GIL holder' if gil else 'active threads'}; "
        f"samples of all workers: {samples})"
    )
    table = Table("component (innermost known frame)", "share", box=None)
    for name, count in by_bucket.most_common():
        table.add_row(name, f"{100 * count / samples:5.1f}%")
    console.print(table)
    table = Table("app function (inclusive)", "share", box=None)
    for name, count in inclusive_app.most_common(top):
        table.add_row(name, f"{100 * count / samples:5.1f}%")
    console.print(table)
    table = Table("function (self)", "share", box=None)
    for name, count in self_time.most_common(top):
        table.add_row(name[:110], f"{100 * count / samples:5.1f}%")
    console.print(table)


# --- checks ---------------------------------------------------------------------------------


@dataclass
class CheckResult:
    stored: int
    doubled: int
    over_overlap: int
    over_with_leases: int
    counter_drift: int
    statuses: dict[str, int]
    active_expired: int
    raters_multi_active: int
    done_without_judgment: int
    judgment_without_done: int

    def ok(self, acknowledged: int, gave_up: int) -> bool:
        stored_ok = acknowledged <= self.stored <= acknowledged + gave_up
        return stored_ok and not (
            self.doubled or self.over_overlap or self.over_with_leases or self.counter_drift
        )


def check_database(url: URL, project_id: int, overlap: int) -> CheckResult:
    engine = create_engine(url)
    p = {"p": project_id, "o": overlap}
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(text(sql), p).scalar_one())

            stored = one("SELECT count(*) FROM judgments WHERE project_id = :p")
            doubled = one(
                "SELECT count(*) FROM (SELECT comparison_id, rater_id FROM judgments "
                "GROUP BY comparison_id, rater_id HAVING count(*) > 1) d"
            )
            over = one(
                "SELECT count(*) FROM (SELECT comparison_id FROM judgments WHERE project_id = :p "
                "GROUP BY comparison_id HAVING count(*) > :o) d"
            )
            over_with_leases = one(
                "SELECT count(*) FROM (SELECT c.id FROM comparisons c "
                "LEFT JOIN judgments j ON j.comparison_id = c.id "
                "LEFT JOIN assignments a ON a.comparison_id = c.id AND a.status = 'active' "
                "  AND a.lease_expires_at > now() "
                "WHERE c.project_id = :p GROUP BY c.id "
                "HAVING count(DISTINCT j.id) + count(DISTINCT a.id) > :o) d"
            )
            drift = one(
                "SELECT count(*) FROM comparisons c WHERE c.project_id = :p AND c.judgment_count "
                "<> (SELECT count(*) FROM judgments j WHERE j.comparison_id = c.id)"
            )
            statuses = dict(
                conn.execute(
                    text(
                        "SELECT status, count(*) FROM assignments WHERE project_id = :p "
                        "GROUP BY status ORDER BY status"
                    ),
                    p,
                ).all()
            )
            active_expired = one(
                "SELECT count(*) FROM assignments WHERE project_id = :p AND status = 'active' "
                "AND lease_expires_at <= now()"
            )
            multi = one(
                "SELECT count(*) FROM (SELECT rater_id FROM assignments WHERE project_id = :p "
                "AND status = 'active' GROUP BY rater_id HAVING count(*) > 1) d"
            )
            done_without = one(
                "SELECT count(*) FROM assignments a WHERE a.project_id = :p AND a.status = 'done' "
                "AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.comparison_id = a.comparison_id "
                "AND j.rater_id = a.rater_id)"
            )
            judgment_without = one(
                "SELECT count(*) FROM judgments j JOIN assignments a ON a.id = j.assignment_id "
                "WHERE j.project_id = :p AND a.status <> 'done'"
            )
    finally:
        engine.dispose()
    return CheckResult(
        stored=stored,
        doubled=doubled,
        over_overlap=over,
        over_with_leases=over_with_leases,
        counter_drift=drift,
        statuses=statuses,
        active_expired=active_expired,
        raters_multi_active=multi,
        done_without_judgment=done_without,
        judgment_without_done=judgment_without,
    )


# --- SQL statements per request -------------------------------------------------------------


@dataclass
class Statements:
    label: str
    status: int
    seconds: float
    statements: list[tuple[str, float]]
    checkouts: int
    commits: int
    pinged: bool = False  # the app's pool pings each checkout (pool_pre_ping)


@dataclass
class SingleUser:
    wall: list[float]
    cpu: list[float]  # CPU of this whole process (app, TestClient, driver), all threads
    statements: list[float]  # wall time inside cursor.execute


def count_queries(url: URL, secret_key: str, single_user: int) -> tuple[list[Statements], SingleUser]:
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from app.config import Settings
    from app.web.app import create_app

    settings = Settings(
        database_url=url.render_as_string(hide_password=False),
        secret_key=secret_key,
        environment="production",
    )
    app = create_app(settings)
    engine = app.state.engine
    log: list[tuple[str, float]] = []
    counters = Counter[str]()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        log.append((statement, time.perf_counter() - conn.info["bench_started"].pop()))

    @event.listens_for(engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        counters["commits"] += 1

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_conn, record, proxy):  # type: ignore[no-untyped-def]
        counters["checkouts"] += 1  # with pool_pre_ping each checkout also pings: one round trip

    results = []
    # https: the production session cookie is Secure.
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/login")
        token = _CSRF.search(page.text)
        assert token, "no CSRF token on /login"
        answer = client.post(
            "/login",
            data={"username": PROBE, "password": PASSWORD, "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert answer.status_code == 303, f"probe login answered {answer.status_code}"

        def measure(label: str, call: Any) -> httpx.Response:
            log.clear()
            counters.clear()
            started = time.perf_counter()
            response = call()
            results.append(
                Statements(
                    label=label,
                    status=response.status_code,
                    seconds=time.perf_counter() - started,
                    statements=list(log),
                    checkouts=counters["checkouts"],
                    commits=counters["commits"],
                    pinged=bool(engine.pool._pre_ping),
                )
            )
            return response

        page = measure("(a) GET /rate/{slug}: claims the next pair", lambda: client.get(f"/rate/{SLUG}"))
        csrf, assignment = _CSRF.search(page.text), _ASSIGNMENT.search(page.text)
        assert csrf and assignment, "the probe got no pair"
        measure(
            "(b) POST judgment (+ the next pair)",
            lambda: client.post(
                f"/rate/{SLUG}/judgments",
                data={"assignment_id": assignment.group(1), "pick": "1", "rationale": ""},
                headers={"HX-Request": "true", "X-CSRF-Token": csrf.group(1)},
            ),
        )
        page = measure("(c) GET /rate/{slug} again (lease held)", lambda: client.get(f"/rate/{SLUG}"))
        # One rater alone, in-process: the cost of a submit without any concurrency.
        walls: list[float] = []
        cpus: list[float] = []
        statements_s: list[float] = []
        for _ in range(single_user):
            csrf, assignment = _CSRF.search(page.text), _ASSIGNMENT.search(page.text)
            if not (csrf and assignment):
                break
            log.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            page = client.post(
                f"/rate/{SLUG}/judgments",
                data={"assignment_id": assignment.group(1), "pick": "-1", "rationale": ""},
                headers={"HX-Request": "true", "X-CSRF-Token": csrf.group(1)},
            )
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            statements_s.append(sum(seconds for _, seconds in log))
    engine.dispose()
    return results, SingleUser(walls, cpus, statements_s)


# --- raw PostgreSQL inserts -----------------------------------------------------------------

_RAW_TABLE = (
    "CREATE TABLE bench_raw_insert (id bigserial PRIMARY KEY, rater_id int NOT NULL, "
    "comparison_id int NOT NULL, choice varchar(16) NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())"
)


def raw_inserts(url: URL, clients: int, seconds: float, method: str) -> tuple[float, str]:
    """Single-row INSERTs per second (each its own transaction) at `clients` connections."""
    import psycopg

    with psycopg.connect(_libpq_uri(url), autocommit=True) as pg:
        pg.execute("DROP TABLE IF EXISTS bench_raw_insert")
        pg.execute(_RAW_TABLE)
    try:
        pgbench = shutil.which("pgbench")
        if method == "pgbench" and pgbench is None:
            raise SystemExit("error: --raw-method pgbench, but pgbench is not installed")
        if pgbench and method in ("auto", "pgbench"):
            return _pgbench(pgbench, url, clients, seconds)
        return asyncio.run(_python_inserts(url, clients, seconds)), "asyncio + psycopg"
    finally:
        with psycopg.connect(_libpq_uri(url), autocommit=True) as pg:
            pg.execute("DROP TABLE IF EXISTS bench_raw_insert")


def _pgbench(pgbench: str, url: URL, clients: int, seconds: float) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(
            "\\set cid random(1, 1000000)\n"
            "INSERT INTO bench_raw_insert (rater_id, comparison_id, choice) "
            "VALUES (:client_id, :cid, 'A');\n"
        )
    command = [pgbench, "-n", "-c", str(clients), "-j", str(min(2, clients))]
    command += ["-T", str(max(1, round(seconds))), "-f", script.name]
    command += ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    command += ["-U", url.username or "postgres", str(url.database)]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    finally:
        os.unlink(script.name)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode or not match:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr or done.stdout}")
    shown = " ".join(command).replace(script.name, "script.sql")
    return float(match.group(1)), f"{shown}; script.sql: one INSERT of one row"


async def _python_inserts(url: URL, clients: int, seconds: float) -> float:
    import psycopg

    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal count
        async with await psycopg.AsyncConnection.connect(_libpq_uri(url), autocommit=True) as pg:
            while time.perf_counter() < deadline:
                await pg.execute(
                    "INSERT INTO bench_raw_insert (rater_id, comparison_id, choice) VALUES (%s, %s, 'A')",
                    (n, random.randint(1, 1_000_000)),
                )
                count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    return count / (time.perf_counter() - started)


# --- report ---------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def report_load(args: argparse.Namespace, stats: LoadStats, cpu: CpuUse, mode: str = "pairs") -> float:
    rate = stats.acknowledged_in_window / args.duration
    ranking = mode == "rankings"
    unit = "ranking" if ranking else "judgment"
    title = f"{'Rankings' if ranking else 'Pairs'}: latency per call (timed window; login excluded)"
    table = Table(title=title, title_justify="left")
    for column in ("call", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "call" else "right")
    for kind in (f"POST {unit}", "GET page", "GET page (first)"):
        values = stats.latency.get(kind, [])
        table.add_row(
            kind + (" [warm-up]" if kind.endswith("(first)") else ""),
            str(len(values)),
            *(_ms(_pct(values, q)) for q in (50, 95, 99, 100)),
        )
    console.print(table)
    post = stats.latency.get(f"POST {unit}", [])
    implied = (
        f" = {rate * implied_pairs(args.rank_k):,.0f} implied pairs/s (K={args.rank_k})" if ranking else ""
    )
    console.print(
        f"[bold]{unit}s/s: {rate:,.0f}{implied}[/bold]  ({stats.acknowledged_in_window:,} acknowledged "
        f"in {args.duration:g} s; {stats.acknowledged:,} in all incl. warm-up and drain)"
    )
    errors = sum(stats.errors.values())
    console.print(
        f"errors: {errors}  retries: {stats.retries}  repeats answered 'already saved': "
        f"{stats.already_saved}  gave up: {stats.gave_up}  raters out of pairs: "
        f"{stats.out_of_pairs}"
    )
    for kind, count in stats.errors.most_common():
        console.print(f"  {count:>6}  {kind}")
    p99 = _pct(post, 99)
    if not ranking:
        verdict_rate = "met" if rate >= 1500 else "NOT met"
        verdict_p99 = "met" if p99 < 0.1 else "NOT met"
        console.print(
            f"target (64 raters): >= 1,500 judgments/s {verdict_rate}; "
            f"p99 < 100 ms {verdict_p99} (POST p99 {_ms(p99)} ms)"
        )
    cores = os.cpu_count() or 1
    per = max(1, stats.acknowledged_in_window)

    def share(seconds: float) -> str:
        return (
            f"{seconds / cpu.wall:4.2f} cores ({100 * seconds / (cpu.wall * cores):3.0f}% of "
            f"machine), {1000 * seconds / per:5.2f} ms CPU/{unit}"
        )

    console.print(
        f"\n[bold]CPU over the timed window[/bold] ({cpu.wall:.1f} s, {cores} cores; client, "
        "server and PostgreSQL share them):"
    )
    for pid, seconds in sorted(cpu.workers.items()):
        console.print(f"  server worker {pid:<8} {share(seconds)}")
    for pid in cpu.gone_workers:
        console.print(
            f"  [red]server worker {pid} died during the window[/red] (its CPU is not counted): "
            "a crash, or uvicorn's supervisor killing it after a missed 5 s health-check ping"
        )
    console.print(f"  server, all workers  {share(sum(cpu.workers.values()))}")
    console.print(f"  PostgreSQL (bench db) {share(cpu.postgres)}")
    console.print(f"  bench client         {share(cpu.client)}")
    console.print(f"  other processes      {share(cpu.other)}  (other work on the machine)")
    idle = 1 - cpu.machine / (cpu.wall * cores)
    console.print(f"  machine busy         {share(cpu.machine)}; idle {100 * idle:.0f}%")
    return rate


def implied_pairs(k: int) -> int:
    """The pairs one full order of K responses implies (ties included, as ties)."""
    return k * (k - 1) // 2


@dataclass
class RankingCheck:
    stored: int
    doubled: int  # (ranking, rater) stored twice
    over_overlap: int  # rankings with more orders than the overlap
    over_with_leases: int  # orders + active leases over the overlap
    counter_drift: int  # rankings.judgment_count differing from the orders
    bad_ranks: int  # orders whose ranks are not one per completion

    def ok(self, acknowledged: int, gave_up: int) -> bool:
        stored_ok = acknowledged <= self.stored <= acknowledged + gave_up
        return stored_ok and not (
            self.doubled or self.over_overlap or self.over_with_leases or self.counter_drift or self.bad_ranks
        )


def check_rankings(url: URL, project_id: int, overlap: int) -> RankingCheck:
    engine = create_engine(url)
    p = {"p": project_id, "o": overlap}
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(text(sql), p).scalar_one())

            return RankingCheck(
                stored=one("SELECT count(*) FROM ranking_judgments WHERE project_id = :p"),
                doubled=one(
                    "SELECT count(*) FROM (SELECT ranking_id, rater_id FROM ranking_judgments "
                    "GROUP BY ranking_id, rater_id HAVING count(*) > 1) d"
                ),
                over_overlap=one(
                    "SELECT count(*) FROM (SELECT ranking_id FROM ranking_judgments WHERE project_id = :p "
                    "GROUP BY ranking_id HAVING count(*) > :o) d"
                ),
                over_with_leases=one(
                    "SELECT count(*) FROM (SELECT r.id FROM rankings r "
                    "LEFT JOIN ranking_judgments j ON j.ranking_id = r.id "
                    "LEFT JOIN ranking_assignments a ON a.ranking_id = r.id AND a.status = 'active' "
                    "  AND a.lease_expires_at > now() "
                    "WHERE r.project_id = :p GROUP BY r.id "
                    "HAVING count(DISTINCT j.id) + count(DISTINCT a.id) > :o) d"
                ),
                counter_drift=one(
                    "SELECT count(*) FROM rankings r WHERE r.project_id = :p AND r.judgment_count "
                    "<> (SELECT count(*) FROM ranking_judgments j WHERE j.ranking_id = r.id)"
                ),
                bad_ranks=one(
                    "SELECT count(*) FROM ranking_judgments j JOIN rankings r ON r.id = j.ranking_id "
                    "WHERE j.project_id = :p AND jsonb_array_length(j.ranks) "
                    "<> jsonb_array_length(r.completion_ids)"
                ),
            )
    finally:
        engine.dispose()


def report_ranking_checks(check: RankingCheck, stats: LoadStats) -> bool:
    ok = check.ok(stats.acknowledged, stats.gave_up)
    state = "[green]ok[/green]" if ok else "[red]FAIL[/red]"
    console.print(
        f"\n[bold]Count check, rankings[/bold]: orders stored {check.stored:,} vs acknowledged "
        f"{stats.acknowledged:,}"
        + (f" (+ {stats.gave_up} unknown)" if stats.gave_up else "")
        + f"; (ranking, rater) twice {check.doubled}; over the overlap {check.over_overlap} "
        f"(with leases {check.over_with_leases}); judgment_count drift {check.counter_drift}; "
        f"ranks not one per completion {check.bad_ranks}  {state}"
    )
    return ok


def report_checks(check: CheckResult, stats: LoadStats) -> bool:
    ok = check.ok(stats.acknowledged, stats.gave_up)

    def mark(good: bool) -> str:
        return "[green]ok[/green]" if good else "[red]FAIL[/red]"

    console.print("\n[bold]Count check[/bold] (PostgreSQL after the server stopped):")
    stored_ok = stats.acknowledged <= check.stored <= stats.acknowledged + stats.gave_up
    console.print(
        f"  judgments stored {check.stored:,} vs acknowledged {stats.acknowledged:,}"
        + (f" (+ {stats.gave_up} unknown after failed retries)" if stats.gave_up else "")
        + f"  {mark(stored_ok)}"
    )
    console.print(f"  (comparison, rater) stored twice: {check.doubled}  {mark(not check.doubled)}")
    console.print(
        f"  pairs with more judgments than the overlap: {check.over_overlap}  {mark(not check.over_overlap)}"
    )
    console.print(
        f"  pairs with judgments + active leases over the overlap: {check.over_with_leases}  "
        f"{mark(not check.over_with_leases)}"
    )
    console.print(
        f"  comparisons.judgment_count differing from the judgments: {check.counter_drift}  "
        f"{mark(not check.counter_drift)}"
    )
    statuses = ", ".join(f"{k} {v:,}" for k, v in check.statuses.items()) or "none"
    console.print(f"  assignments: {statuses}")
    console.print(
        f"  active leases past their expiry: {check.active_expired}; raters holding more than "
        f"one active lease: {check.raters_multi_active}; done without a judgment: "
        f"{check.done_without_judgment}; judgments whose assignment is not done: "
        f"{check.judgment_without_done}"
    )
    return ok


def report_single_user(single: SingleUser) -> None:
    if not single.wall:
        return
    n = len(single.wall)
    console.print(
        f"  one rater alone, {n} sequential POST judgments in-process: wall p50 "
        f"{_ms(_pct(single.wall, 50))} ms, mean {_ms(sum(single.wall) / n)} ms; CPU mean "
        f"{_ms(sum(single.cpu) / n)} ms (app + TestClient + driver); in statements mean "
        f"{_ms(sum(single.statements) / n)} ms"
    )


def report_statements(results: list[Statements], show: int) -> None:
    console.print("\n[bold]SQL statements per request[/bold] (in-process TestClient, one rater):")
    for r in results:
        ping = " (pre-ping: +1 round trip each)" if r.pinged else " (no pre-ping)"
        db_ms = 1000 * sum(s for _, s in r.statements)
        console.print(
            f"  {r.label}: [bold]{len(r.statements)} statements[/bold] + {r.commits} commit, "
            f"{r.checkouts} pool checkout{ping}; HTTP {r.status}, "
            f"{1000 * r.seconds:.1f} ms in all, {db_ms:.1f} ms in statements"
        )
        if show:
            for n, (statement, seconds) in enumerate(r.statements, 1):
                flat = " ".join(statement.split())
                console.print(f"    {n:>2}. {1000 * seconds:7.2f} ms  {flat[:show]}")


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = make_url(normalize_url(args.database_url))
    if url.get_backend_name() != "postgresql":
        raise SystemExit("error: --database-url must be a PostgreSQL URL")
    secret_key = secrets.token_urlsafe(36)  # 48 characters
    console.print(
        f"[bold]rating load bench[/bold]: {args.raters} raters, {args.workers} workers, "
        f"{args.pairs:,} pairs, overlap {args.overlap}, mode {args.mode} (K={args.rank_k}), "
        f"{args.warmup:g} s warm-up + "
        f"{args.duration:g} s, database {url.render_as_string(hide_password=True)}"
    )
    per_pair = args.overlap
    busy = machine_busy()
    console.print(f"Machine busy before the run: {100 * busy:.0f}% of {os.cpu_count()} cores.")
    if busy > 0.15:
        console.print(
            "[yellow]Other work is running on this machine: the figures will be lower and "
            "noisier than on a quiet one (see 'other processes' below).[/yellow]"
        )
    create_database(url)
    server: Server | None = None
    exit_code = 0
    try:
        seeded = seed(url, args)
        if args.setup_sql:
            run_setup_sql(url, args.setup_sql)
        server = Server(args, url.render_as_string(hide_password=False), secret_key)
        with console.status(f"Starting `{server.command}`…"):
            try:
                server.wait_ready()
            except RuntimeError as error:
                console.print(f"[red]{error}[/red]\n{server.log_tail()}")
                return 2
        console.print(f"Server up: {server.command} (workers {server.worker_pids()})")
        stats, cpu, profiles = LoadStats(), None, []
        if args.mode != "rankings":
            stats, cpu, profiles = asyncio.run(run_load(args, server, seeded, args.profile))
        rank_stats: LoadStats | None = None
        rank_cpu: CpuUse | None = None
        if seeded.rank_project_id is not None:
            console.print(f"[bold]Ranking mode[/bold]: the same raters order rankings of K={args.rank_k}.")
            rank_stats, rank_cpu, _ = asyncio.run(run_load(args, server, seeded, None, mode="rankings"))
        server.stop()
        if server.proc.returncode not in (0, -signal.SIGTERM):
            console.print(f"[yellow]server exit status {server.proc.returncode}[/yellow]")
        problems = server.log_problems()
        console.print(f"Server stopped (log: {server.log_path}; {sum(problems.values())} tracebacks).")
        for problem, count in problems.most_common(10):
            console.print(f"  {count:>6}  server: {problem}")
        rate = report_load(args, stats, cpu) if cpu is not None else 0.0
        if args.smoke and (problems or (cpu is not None and stats.acknowledged == 0)):
            console.print("[red]smoke run: no judgment acknowledged, or the server logged tracebacks[/red]")
            exit_code = 1
        if rank_stats is not None and rank_cpu is not None and seeded.rank_project_id is not None:
            console.print()
            rankings = report_load(args, rank_stats, rank_cpu, mode="rankings")
            pairs = rankings * implied_pairs(args.rank_k)
            versus = f" = {pairs / rate:.2f} x the pair mode's judgments/s" if rate else ""
            console.print(
                f"[bold]{args.raters} raters: pairs {rate:,.0f} judgments/s; rankings (K={args.rank_k}) "
                f"{rankings:,.0f} rankings/s -> {pairs:,.0f} implied pairs/s{versus}[/bold]"
            )
            if args.smoke and rank_stats.acknowledged == 0:
                console.print("[red]smoke run: no ranking acknowledged[/red]")
                exit_code = 1
            if not report_ranking_checks(
                check_rankings(url, seeded.rank_project_id, args.overlap), rank_stats
            ):
                exit_code = 1
        if stats.out_of_pairs:
            console.print(
                f"[yellow]{stats.out_of_pairs} raters ran out of pairs: seed more with --pairs "
                f"(the run used about {stats.acknowledged // per_pair + 1:,}).[/yellow]"
            )
        check = check_database(url, seeded.project_id, args.overlap)
        if cpu is not None and not report_checks(check, stats):
            exit_code = 1
        if profiles:
            summarize_profiles(profiles, args.profile_threads == "gil")
            console.print(f"  raw stacks: {', '.join(map(str, profiles))}")
        if not args.no_query_count:
            results, single = count_queries(url, secret_key, args.single_user)
            report_statements(results, args.show_sql)
            report_single_user(single)
        if args.raw_seconds > 0 and rate:
            with console.status(f"Raw PostgreSQL inserts, {args.raters} clients…"):
                raw, how = raw_inserts(url, args.raters, args.raw_seconds, args.raw_method)
            console.print(
                f"\n[bold]Raw PostgreSQL single-row inserts[/bold]: {raw:,.0f}/s ({how}; "
                "server stopped, so PostgreSQL and the load generator share the cores)"
            )
            console.print(
                f"[bold]judgments/s / raw inserts/s = {rate:,.0f} / {raw:,.0f} = {rate / raw:.3f}[/bold]"
            )
    finally:
        if server is not None and server.proc.poll() is None:
            server.stop()
        if args.keep:
            console.print(f"Kept database {url.database!r} (--keep).")
        else:
            drop_database(url)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
