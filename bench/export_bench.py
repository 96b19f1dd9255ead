"""Export benchmark: 1,000,000 judgments on PostgreSQL, exported as JSONL and Parquet.

    .venv/bin/python bench/export_bench.py [--judgments 1000000] [--url postgresql://postgres@127.0.0.1:5432/rlhf_bench]

Seeds the database with COPY (prompts, two completions each, one comparison per prompt, three
raters per comparison), then exports the raw per-rater rows (one per judgment) and the majority
rows (one per comparison), each in a fresh process so that its peak memory (ru_maxrss) is its
own. For reference, PostgreSQL's own ``COPY (SELECT …) TO STDOUT`` of the same per-judgment rows
(the same join and columns) is timed in the same run. Target: >= 0.5x the COPY rate, < 400 MB.
The database named in --url is dropped and created again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _seeding import copy_rows  # noqa: E402

# BENCH_POSTGRES: the PostgreSQL server the benches use (scripts/bench_smoke points it at its own).
DEFAULT_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432") + "/rlhf_bench"
RATERS_PER_PAIR = 3
N_RATERS = 60
FLAGS = ["unsafe", "off-topic"]

COPY_QUERY = """
SELECT j.id, j.comparison_id, j.rater_id, j.choice, j.strength, j.both_bad, j.flags, j.rationale,
       j.time_spent_ms, j.a_on_left, j.source, j.created_at, c.kind, c.gold_choice, c.prompt_id,
       p.messages, p.content_hash,
       a.id, a.text, a.model_name, a.model_version_id, a.sampling,
       b.id, b.text, b.model_name, b.model_version_id, b.sampling
FROM judgments j
JOIN comparisons c ON c.id = j.comparison_id
JOIN prompts p ON p.id = c.prompt_id
JOIN completions a ON a.id = c.completion_a_id
JOIN completions b ON b.id = c.completion_b_id
WHERE j.project_id = 1 AND j.source = 'human'
ORDER BY j.comparison_id, j.id
"""


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def seed(url: str, judgments: int) -> None:
    """Migrates a fresh database, adds the project and raters through the models, and COPYs the
    pairs and judgments (columns not named here take the models' defaults)."""
    import psycopg

    from app import migrations
    from app.db import make_engine, make_sessionmaker, session_scope
    from app.models import Comparison, Completion, Judgment, Project, Prompt, Role, User

    parsed = make_url(url)
    admin = parsed.set(database="postgres").render_as_string(False)
    with psycopg.connect(_psycopg_url(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parsed.database}"')
    migrations.upgrade(url)
    pairs = judgments // RATERS_PER_PAIR
    rng = random.Random(0)
    words = "the a model answer question good bad helpful river mountain code python data train".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    started = time.perf_counter()
    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        session.add(Project(id=1, slug="bench", name="Bench", overlap=RATERS_PER_PAIR, flags=FLAGS))
        session.add_all(User(id=i, username=f"rater{i}", password_hash="!", role=Role.rater)
                        for i in range(1, N_RATERS + 1))  # fmt: skip
    engine.dispose()
    created = "2026-01-01T00:00:00Z"
    with psycopg.connect(_psycopg_url(url)) as conn, conn.cursor() as cur:
        copy_rows(cur, Prompt.__table__, (
            {"id": i, "project_id": 1, "content_hash": f"{i:064x}", "created_at": created,
             "messages": [{"role": "user", "content": f"question {i}: {text(12)}"}]}
            for i in range(1, pairs + 1)
        ))  # fmt: skip
        sampling = {"temperature": 0.8, "top_p": 0.95}
        copy_rows(cur, Completion.__table__, (
            {"id": 2 * i - 1 + side, "prompt_id": i, "text": text(40 + 20 * side),
             "content_hash": f"{2 * i + side:064x}", "model_name": f"policy-v{side}", "sampling": sampling,
             "created_at": created}
            for i in range(1, pairs + 1) for side in (0, 1)
        ))  # fmt: skip
        copy_rows(cur, Comparison.__table__, (
            {"id": i, "project_id": 1, "prompt_id": i, "completion_a_id": 2 * i - 1, "completion_b_id": 2 * i,
             "kind": "regular", "judgment_count": RATERS_PER_PAIR, "created_at": created}
            for i in range(1, pairs + 1)
        ))  # fmt: skip

        def judgment(i: int) -> dict[str, Any]:
            comparison = (i - 1) // RATERS_PER_PAIR + 1
            roll = rng.random()
            choice, strength = (
                ("A", 1 + (roll < 0.3)) if roll < 0.65 else (("B", 1) if roll < 0.92 else ("tie", 0))
            )
            return {"id": i, "comparison_id": comparison, "project_id": 1,
                    "rater_id": ((comparison * 7 + (i % RATERS_PER_PAIR) * 13) % N_RATERS) + 1,
                    "choice": choice, "strength": strength, "both_bad": roll > 0.97,
                    "flags": ["unsafe"] if roll > 0.99 else [], "rationale": "clear" if roll < 0.1 else "",
                    "time_spent_ms": int(roll * 20000), "a_on_left": roll < 0.5, "source": "human",
                    "created_at": "2026-01-02T00:00:00Z"}  # fmt: skip

        copy_rows(cur, Judgment.__table__, (judgment(i) for i in range(1, pairs * RATERS_PER_PAIR + 1)))
        for table in ("users", "prompts", "completions", "comparisons", "judgments", "projects"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.commit()
        cur.execute("ANALYZE")
    print(
        f"seeded {pairs:,} comparisons, {pairs * RATERS_PER_PAIR:,} judgments"
        f" in {time.perf_counter() - started:.1f} s"
    )


def copy_baseline(url: str) -> tuple[int, float, int]:
    import psycopg

    with psycopg.connect(_psycopg_url(url)) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        size = 0
        with cur.copy(f"COPY ({COPY_QUERY}) TO STDOUT") as copy:
            for data in copy:
                size += len(data)
        elapsed = time.perf_counter() - started
        rows = cur.execute("SELECT count(*) FROM judgments WHERE project_id = 1").fetchone()[0]  # type: ignore[index]
    return rows, elapsed, size


def export_child(url: str, fmt: str, aggregation: str, out: str) -> None:
    """Runs in its own process: one export, then its figures as JSON on stdout."""
    from app.db import make_engine, make_sessionmaker
    from app.models import Project
    from app.schemas.export import ComparisonExport
    from app.services import exporting

    factory = make_sessionmaker(make_engine(url, pool_size=1))
    with factory() as session:
        project = session.get(Project, 1)
        assert project is not None
        spec = ComparisonExport(format=fmt, aggregation=aggregation, test_fraction=0.1)
        started = time.perf_counter()
        export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="bench")
        exporting.write_directory(export, out)
        elapsed = time.perf_counter() - started
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": export.stats.total, "judgments": export.stats.preference.judgments_read,
                      "seconds": elapsed, "peak_mb": peak_mb, "bytes": size}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--skip-seed", action="store_true", help="Reuse the database of an earlier run.")
    parser.add_argument("--smoke", action="store_true", help="3,000 judgments: checks that the bench runs.")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "AGGREGATION", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from app.db import normalize_url

    url = normalize_url(args.url)
    if args.smoke:
        args.judgments = 3_000
    if args.child:
        export_child(url, *args.child)
        return
    if not args.skip_seed:
        seed(url, args.judgments)
    rows, copy_s, copy_bytes = copy_baseline(url)
    copy_rate = rows / copy_s
    print(f"PostgreSQL COPY (SELECT …) TO STDOUT: {rows:,} rows in {copy_s:.2f} s = {copy_rate:,.0f} rows/s "
          f"({copy_bytes / 1e6:.0f} MB)")  # fmt: skip
    print(
        f"{'export':<26}{'rows':>11}{'seconds':>9}{'rows/s':>11}{'judgments/s':>13}"
        f"{'vs COPY':>9}{'peak MB':>9}{'MB out':>8}"
    )
    for fmt, aggregation in (
        ("jsonl", "per_rater"),
        ("parquet", "per_rater"),
        ("jsonl", "majority"),
        ("parquet", "majority"),
    ):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, SECRET_KEY="x" * 40)
            done = subprocess.run(
                [sys.executable, __file__, "--url", url, "--child", fmt, aggregation, out],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
        rate = result["rows"] / result["seconds"]
        judgment_rate = result["judgments"] / result["seconds"]
        print(
            f"{fmt + ' ' + aggregation:<26}{result['rows']:>11,}{result['seconds']:>9.2f}{rate:>11,.0f}"
            f"{judgment_rate:>13,.0f}{judgment_rate / copy_rate:>8.2f}x{result['peak_mb']:>9.0f}"
            f"{result['bytes'] / 1e6:>8.0f}"
        )
    print("vs COPY = judgments read per second by the export / rows per second of COPY of the same judgments")


if __name__ == "__main__":
    main()
