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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/rlhf_bench"
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
    import psycopg
    from sqlalchemy.engine import make_url

    from app import migrations

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
    with psycopg.connect(_psycopg_url(url)) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO projects (id, slug, name, instructions, overlap, scale, flags, rationale_required,"
            " lease_seconds, is_active, split_threshold, gold_rate, judge_rubric, created_at, updated_at)"
            " VALUES (1, 'bench', 'Bench', '', 3, 'five', %s, false, 900, true, 0.66, 0, '', now(), now())",
            (json.dumps(FLAGS),),
        )
        with cur.copy("COPY users (id, username, password_hash, role, is_active, is_paused,"
                      " must_change_password, created_at) FROM STDIN") as copy:  # fmt: skip
            for i in range(1, N_RATERS + 1):
                copy.write_row((i, f"rater{i}", "!", "rater", True, False, False, "2026-01-01T00:00:00Z"))
        with cur.copy("COPY prompts (id, project_id, messages, content_hash, created_at) FROM STDIN") as copy:
            for i in range(1, pairs + 1):
                messages = [{"role": "user", "content": f"question {i}: {text(12)}"}]
                copy.write_row((i, 1, json.dumps(messages), f"{i:064x}", "2026-01-01T00:00:00Z"))
        with cur.copy("COPY completions (id, prompt_id, text, content_hash, model_name, sampling, created_at)"
                      " FROM STDIN") as copy:  # fmt: skip
            sampling = json.dumps({"temperature": 0.8, "top_p": 0.95})
            for i in range(1, pairs + 1):
                for side in (0, 1):
                    copy.write_row((2 * i - 1 + side, i, text(40 + 20 * side), f"{2 * i + side:064x}",
                                    f"policy-v{side}", sampling, "2026-01-01T00:00:00Z"))  # fmt: skip
        comparison_columns = (
            "id, project_id, prompt_id, completion_a_id, completion_b_id, kind,"
            " judgment_count, extra_raters, resolution_note, created_at"
        )
        with cur.copy(f"COPY comparisons ({comparison_columns}) FROM STDIN") as copy:
            for i in range(1, pairs + 1):
                copy.write_row(
                    (i, 1, i, 2 * i - 1, 2 * i, "regular", RATERS_PER_PAIR, 0, "", "2026-01-01T00:00:00Z")
                )
        with cur.copy("COPY judgments (id, comparison_id, rater_id, project_id, choice, strength, both_bad,"
                      " flags, rationale, time_spent_ms, a_on_left, source, created_at)"
                      " FROM STDIN") as copy:  # fmt: skip
            for i in range(1, judgments + 1):
                comparison = (i - 1) // RATERS_PER_PAIR + 1
                if comparison > pairs:
                    break
                roll = rng.random()
                choice, strength = (
                    ("A", 1 + (roll < 0.3)) if roll < 0.65 else (("B", 1) if roll < 0.92 else ("tie", 0))
                )
                rater = ((comparison * 7 + (i % RATERS_PER_PAIR) * 13) % N_RATERS) + 1
                copy.write_row((i, comparison, rater, 1, choice, strength, roll > 0.97,
                                json.dumps(["unsafe"] if roll > 0.99 else []), "clear" if roll < 0.1 else "",
                                int(roll * 20000), roll < 0.5, "human", "2026-01-02T00:00:00Z"))  # fmt: skip
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
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "AGGREGATION", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from app.db import normalize_url

    url = normalize_url(args.url)
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
