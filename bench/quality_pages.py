"""How long the label-quality and evaluation pages take on a large project.

1. creates the scratch PostgreSQL database ``rlhf_bench_quality`` (``--database-url``; an existing
   one is dropped only when this bench created it), migrates it, and seeds one project by
   INSERT … SELECT: ``--pairs`` comparisons (the first ``--gold`` of them gold pairs), each
   judged by ``--overlap`` of ``--raters`` raters (so pairs × overlap human judgments), the first
   ``--biased`` raters picking the left side 90% of the time, the others following a hidden
   preference with ``--noise``; an AI judge labels ``--ai-share`` of the pairs;
2. times, over ``--repeat`` rounds, each service call behind the pages (the project report, the
   rater table, the disputed pairs in both scopes, the label length bias) and then each page
   as an admin sees it (``create_app`` + ``TestClient``: routing, SQL, charts and templates);
3. checks the tallies the pages read (kept by the database while the seed wrote the judgments)
   against a recount of the judgments, and exits 1 when one differs;
4. drops the database (unless ``--keep``).

Prints the seeded counts, then per call and per page: min, median and max in ms.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _seeding import default_columns_sql  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402

console = Console(highlight=False)
# BENCH_POSTGRES: the PostgreSQL server of the benches (scripts/bench_smoke points it at its own).
DEFAULT_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432") + "/rlhf_bench_quality"
DB_COMMENT = "scratch database of bench/quality_pages.py (dropped after each run)"
SLUG = "quality-bench"
ADMIN = "bench-admin"
PASSWORD = "bench-admin-password"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/quality_pages.py",
        description="Times the label-quality pages (/quality, /raters, /disputes, /length-bias) "
        "and the service calls behind them on a seeded PostgreSQL project.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--database-url", default=DEFAULT_URL, help="Scratch database to create and drop.")
    p.add_argument("--pairs", type=int, default=100_000, help="Comparisons in the project.")
    p.add_argument("--overlap", type=int, default=3, help="Human judgments per comparison.")
    p.add_argument("--raters", type=int, default=60, help="Rater accounts sharing the work.")
    p.add_argument("--biased", type=int, default=2, help="Raters with a planted left bias.")
    p.add_argument(
        "--noise", type=float, default=0.25, help="Chance an honest rater goes against the hidden preference."
    )
    p.add_argument("--gold", type=int, default=200, help="Gold pairs among the comparisons.")
    p.add_argument("--ai-share", type=float, default=0.3, help="Share of pairs an AI judge also labels.")
    p.add_argument("--repeat", type=int, default=3, help="Rounds of timing per call and page.")
    p.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    p.add_argument("--smoke", action="store_true", help="300 pairs, one round: checks that the bench runs.")
    args = p.parse_args(argv)
    if args.smoke:
        args.pairs, args.raters, args.gold, args.repeat = 300, 8, 20, 1
    if args.overlap > args.raters:
        p.error("--overlap cannot exceed --raters")
    if not 0 <= args.biased <= args.raters:
        p.error("--biased must be between 0 and --raters")
    return args


# --- database -------------------------------------------------------------------------------


def _admin_engine(url: URL):  # type: ignore[no-untyped-def]
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def create_database(url: URL) -> None:
    name = url.database
    engine = _admin_engine(url)
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
        if exists:
            comment = conn.execute(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
                {"n": name},
            ).scalar()
            if comment != DB_COMMENT:
                raise SystemExit(f"error: the database {name!r} exists and was not made by this bench")
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{DB_COMMENT}'"))
    engine.dispose()


def drop_database(url: URL) -> None:
    engine = _admin_engine(url)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    engine.dispose()


SEED_SQL = [
    # prompts and two completions each; B is longer than A on about half of them
    """INSERT INTO prompts (project_id, messages, content_hash, created_at)
       SELECT :project, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'question ' || g)),
              md5('p' || g), now()
       FROM generate_series(1, :pairs) g""",
    """INSERT INTO completions (prompt_id, text, content_hash, created_at)
       SELECT p.id, repeat('word ', 5 + (abs(hashtext(side || p.id)) % 120)), md5(side || p.id), now()
       FROM prompts p, (VALUES ('a'), ('b')) AS s(side) WHERE p.project_id = :project""",
    """INSERT INTO comparisons (project_id, prompt_id, completion_a_id, completion_b_id, kind, gold_choice,
                               judgment_count, extra_raters, resolution_note, created_at)
       SELECT :project, p.id, min(c.id), max(c.id),
              CASE WHEN row_number() OVER (ORDER BY p.id) <= :gold THEN 'gold' ELSE 'regular' END,
              CASE WHEN row_number() OVER (ORDER BY p.id) <= :gold THEN 'A' END,
              0, 0, '', now()
       FROM prompts p JOIN completions c ON c.prompt_id = p.id
       WHERE p.project_id = :project GROUP BY p.id""",
    # The hidden preference: A on ~60% of pairs. Rater k of pair n is (n + k * step) mod R.
    """INSERT INTO judgments (comparison_id, rater_id, project_id, choice, strength, both_bad, flags,
                             rationale, time_spent_ms, a_on_left, source, created_at)
       SELECT c.id, r.id, :project,
              CASE WHEN r.n <= :biased
                   THEN (CASE WHEN random() < 0.9 THEN (CASE WHEN left_a THEN 'A' ELSE 'B' END)
                              ELSE (CASE WHEN left_a THEN 'B' ELSE 'A' END) END)
                   WHEN random() < 0.08 THEN 'tie'
                   WHEN (abs(hashtext('h' || c.id)) % 10 < 6) = (random() >= :noise) THEN 'A'
                   ELSE 'B' END,
              1 + (abs(hashtext('s' || c.id || r.id)) % 2), random() < 0.03,
              CASE WHEN random() < 0.02 THEN '["harmful"]'::jsonb ELSE '[]'::jsonb END,
              '', 4000 + (random() * 30000)::int, left_a, 'human',
              now() - make_interval(secs => (random() * 86400 * 14)::int)
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS pos FROM comparisons WHERE project_id = :project) c
       CROSS JOIN generate_series(0, :overlap - 1) k
       JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users WHERE role = 'rater') r
         ON r.n = 1 + ((c.pos + k * :step) % :raters)
       CROSS JOIN LATERAL (SELECT random() < 0.5 AS left_a) side""",
    # an AI judge on a share of the pairs
    """INSERT INTO judgments (comparison_id, rater_id, project_id, choice, strength, both_bad, flags,
                             rationale, time_spent_ms, a_on_left, source, created_at)
       SELECT c.id, :judge, :project,
              CASE WHEN abs(hashtext('h' || c.id)) % 10 < 6 THEN 'A' ELSE 'B' END,
              1, false, '[]'::jsonb, '', 0, true, 'ai', now()
       FROM comparisons c WHERE c.project_id = :project AND random() < :ai_share""",
    """UPDATE comparisons c SET judgment_count = j.n
       FROM (SELECT comparison_id, count(*) AS n FROM judgments WHERE source = 'human'
             GROUP BY comparison_id) j
       WHERE j.comparison_id = c.id""",
]


def seed(url: str, args: argparse.Namespace) -> dict[str, int]:
    from app.auth import hash_password
    from app.db import make_engine, make_sessionmaker, session_scope
    from app.models import Project, Role, User

    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        project = Project(slug=SLUG, name="Quality bench", overlap=args.overlap, flags=["harmful"],
                          gold_rate=0.05, max_overlap=args.overlap + 2)  # fmt: skip
        cheap = hash_password(PASSWORD)
        session.add(project)
        session.add(User(username=ADMIN, password_hash=cheap, role=Role.admin))
        session.add_all(
            User(username=f"rater-{n:03d}", password_hash=cheap, role=Role.rater) for n in range(args.raters)
        )
        judge = User(username="ai-judge:rm:bench", password_hash=cheap, role=Role.judge)
        session.add(judge)
        session.flush()
        params = {
            "project": project.id,
            "pairs": args.pairs,
            "gold": args.gold,
            "overlap": args.overlap,
            "raters": args.raters,
            "biased": args.biased,
            "noise": args.noise,
            "step": max(1, args.raters // args.overlap),
            "judge": judge.id,
            "ai_share": args.ai_share,
        }
        project_id = project.id
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("seeding", total=len(SEED_SQL))
        with engine.begin() as conn:
            for statement in SEED_SQL:
                conn.execute(text(with_model_defaults(statement)), params)
                progress.advance(task)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        counts = {
            "comparisons": conn.execute(text("SELECT count(*) FROM comparisons")).scalar_one(),
            "human judgments": conn.execute(
                text("SELECT count(*) FROM judgments WHERE source = 'human'")
            ).scalar_one(),
            "AI judgments": conn.execute(
                text("SELECT count(*) FROM judgments WHERE source = 'ai'")
            ).scalar_one(),
            "raters": args.raters,
            "project_id": project_id,
        }
    engine.dispose()
    return counts


def with_model_defaults(statement: str) -> str:
    """An `INSERT INTO t (cols) SELECT …` of SEED_SQL with every column it leaves out that needs a
    value added, set to the model's default (see bench/_seeding.py); other statements unchanged."""
    from app.models import Base

    match = re.match(r"\s*INSERT INTO (\w+) \(([^)]*)\)(.*?)(\s+FROM .*)", statement, re.S)
    if match is None:
        return statement
    table, columns, select, rest = match.groups()
    names, values = default_columns_sql(Base.metadata.tables[table], [c.strip() for c in columns.split(",")])
    return f"INSERT INTO {table} ({columns}{names}){select}{values}{rest}"


# --- timing ---------------------------------------------------------------------------------


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def time_services(url: str, project_id: int, repeat: int) -> list[tuple[str, list[float]]]:
    from app.db import make_engine, make_sessionmaker
    from app.models import Project
    from app.services import evaluation, quality

    engine = make_engine(url, pool_size=1)
    factory = make_sessionmaker(engine)
    results = []

    def call(fn: Callable[[Any, Project], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with factory() as session:
                project = session.get(Project, project_id)
                assert project is not None
                return fn(session, project)

        return run

    calls: list[tuple[str, Callable[[Any, Project], Any]]] = [
        ("quality.project_quality", lambda s, p: quality.project_quality(s, p)),
        ("quality.rater_report", lambda s, p: quality.rater_report(s, p)),
        ("quality.disputes (split)", lambda s, p: quality.disputes(s, p, scope="split")),
        ("quality.disputes (any)", lambda s, p: quality.disputes(s, p, scope="any")),
        ("evaluation.label_length_bias", lambda s, p: evaluation.label_length_bias(s, p.id)),
    ]
    for name, fn in calls:
        results.append((name, _time(call(fn), repeat)))
    engine.dispose()
    return results


def time_pages(url: str, repeat: int) -> list[tuple[str, list[float]]]:

    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.web.app import create_app

    settings = Settings(database_url=url, environment="development", secret_key="b" * 48)
    app = create_app(settings)
    results = []
    with TestClient(app) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answer = client.post(
            "/login",
            data={"username": ADMIN, "password": PASSWORD, "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        if answer.status_code != 303:
            raise SystemExit(f"error: the bench admin could not log in (HTTP {answer.status_code})")
        for path in ("quality", "raters", "disputes", "disputes?scope=any", "length-bias", "leaderboard"):
            url_path = f"/admin/projects/{SLUG}/{path}"

            def get(url_path: str = url_path) -> None:
                response = client.get(url_path)
                if response.status_code != 200:
                    raise SystemExit(f"error: GET {url_path} answered {response.status_code}")

            results.append((f"GET …/{path}", _time(get, repeat)))
    app.state.engine.dispose()
    return results


def check_tallies(url: str) -> bool:
    """The tallies the pages read, kept by the database's triggers while the seed inserted the
    judgments, against a recount of the judgments (`rlhf db tallies`)."""
    from app.db import make_engine, make_sessionmaker, session_scope
    from app.services import tallies

    engine = make_engine(url, pool_size=1)
    started = time.perf_counter()
    with session_scope(make_sessionmaker(engine, read_only=True)) as session:
        checks = tallies.check(session)
    engine.dispose()
    wrong = [f"{c.table} ({c.wrong:,} of {c.rows:,} rows)" for c in checks if not c.ok]
    if wrong:
        console.print(f"[red]error: tallies differ from a recount of the judgments: {', '.join(wrong)}[/red]")
        return False
    rows = sum(c.rows for c in checks)
    console.print(
        f"Tallies = a recount of the judgments ({rows:,} rows, {time.perf_counter() - started:.1f} s)."
    )
    return True


def _table(title: str, rows: list[tuple[str, list[float]]]) -> Table:
    table = Table("call", "min ms", "median ms", "max ms", title=title)
    for name, times in rows:
        table.add_row(name, f"{min(times):,.0f}", f"{statistics.median(times):,.0f}", f"{max(times):,.0f}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = make_url(args.database_url)
    if not url.drivername.startswith("postgresql"):
        raise SystemExit("error: --database-url must be a PostgreSQL URL")
    from app.db import normalize_url
    from app.migrations import upgrade

    url_text = normalize_url(args.database_url)
    create_database(url)
    try:
        started = time.perf_counter()
        upgrade(url_text)
        counts = seed(url_text, args)
        console.print(
            f"Seeded in {time.perf_counter() - started:.1f} s: {counts['comparisons']:,} comparisons "
            f"({args.gold} gold), {counts['human judgments']:,} human and {counts['AI judgments']:,} AI "
            f"judgments, {counts['raters']} raters ({args.biased} with a left bias)."
        )
        services = time_services(url_text, counts["project_id"], args.repeat)
        console.print(_table("Service calls", services))
        pages = time_pages(url_text, args.repeat)
        console.print(_table("Pages (admin, in-process, rendering included)", pages))
        if not check_tallies(url_text):
            return 1
    finally:
        if args.keep:
            console.print(f"Kept the database {url.database!r}.")
        else:
            drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
