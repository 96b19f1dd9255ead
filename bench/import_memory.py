"""Peak memory of `rlhf import pairs` on a generated 200 MB JSONL file: imported (with
MAX_UPLOAD_BYTES raised above it), rejected for its size (the default limit), and a 200 MB
single line rejected by the per-line limit. One line per case: the peak RSS of the process.

    .venv/bin/python bench/import_memory.py [--mb 200] [--database-url postgresql://...]

Runs `rlhf` in a subprocess on a throwaway SQLite database (or on the empty database named by
--database-url, whose tables are created and left behind); the figures are the child's VmHWM and
its wall time. Not a timed test: a benchmark line to compare before and after a change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rlhf(env: dict[str, str], *args: str) -> tuple[int, float, float, str]:
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited at exec).
    code = (
        "import re, sys\nfrom app.cli import main\ntry:\n    main()\nfinally:\n"
        "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "    sys.stderr.write(f'\\nmaxrss_kb={hwm}\\n')\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    kb = int(done.stderr.rsplit("maxrss_kb=", 1)[1].split()[0])
    return done.returncode, kb / 1024, wall, (done.stdout + done.stderr).strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--database-url", help="an empty database to use instead of a throwaway SQLite one")
    parser.add_argument("--smoke", action="store_true", help="a 1 MB file: checks that the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.mb = 1
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAX_UPLOAD_BYTES")}
        base.update(
            ENVIRONMENT="development",
            DATA_DIR=tmp,
            DATABASE_URL=args.database_url or f"sqlite:///{tmp}/bench.db",
        )
        subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "db", "upgrade"],
                       cwd=ROOT, env=base, check=True, capture_output=True)  # fmt: skip
        subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "projects", "add", "bench",
                        "--name", "Bench"], cwd=ROOT, env=base, check=True, capture_output=True)  # fmt: skip
        big = Path(tmp) / "pairs.jsonl"
        with big.open("w") as out:
            n = 0
            while out.tell() < size:
                n += 1
                row = {"prompt": f"question {n}: " + "why " * 100, "completion_a": f"a{n} " + "yes " * 200,
                       "completion_b": f"b{n} " + "no " * 250}  # fmt: skip
                out.write(json.dumps(row) + "\n")
        line = Path(tmp) / "line.jsonl"
        with line.open("w") as out:
            out.write('{"prompt": "')
            for _ in range(size // 2**20):
                out.write("x" * 2**20)
            out.write('"}\n')
        raised = dict(base, MAX_UPLOAD_BYTES=str(2 * size))
        cases = [
            ("imported", raised, big),
            ("rejected, over MAX_UPLOAD_BYTES", base, big),
            ("rejected, one line of the whole size", raised, line),
        ]
        for name, env, path in cases:
            code, peak, wall, first = _rlhf(env, "import", "pairs", str(path), "--project", "bench")
            mb = path.stat().st_size / 2**20
            figures = f"exit {code}  peak RSS {peak:6.0f} MB  {wall:6.1f} s"
            print(f"{name:38s} {mb:4.0f} MB file  {figures}  | {first[:80]}")


if __name__ == "__main__":
    main()
