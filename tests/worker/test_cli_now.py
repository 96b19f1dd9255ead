"""`rlhf train … --now` in a log file or CI (stdout not a terminal): plain lines as they come,
with the run's own log lines; `rlhf runs show` then reads the finished run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.utils.processes import ROOT, service_env
from tests.utils.tiny_models import make_tiny_causal_lm


def test_train_now_prints_plain_progress_and_log_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ARTIFACTS_DIR=str(tmp_path / "art"),
                      HF_HUB_OFFLINE="1", PROCESSES_PER_RUN="1")  # fmt: skip

    def rlhf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from app.cli import main; main()", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    assert rlhf("db", "upgrade").returncode == 0
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(
        json.dumps({"prompt": f"tell me about the {word}", "response": "the cat is happy"}) + "\n"
        for word in "cat dog bird fish tree sun moon star".split()
    ))  # fmt: skip
    assert rlhf("projects", "add", "p", "--name", "P").returncode == 0
    assert rlhf("import", "demos", str(demos), "--project", "p").returncode == 0
    assert (
        rlhf("models", "add", "tiny", "--path", str(make_tiny_causal_lm(tmp_path / "tiny"))).returncode == 0
    )

    done = rlhf("train", "sft", "--project", "p", "--base", "tiny", "--now",
                "--set", "max_steps=2", "--set", "batch_size=4", "--set", "lora_r=4")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "run 1: starting here (loading the model and the data)"
    assert "run 1: sft: 8 demonstrations, 0 held out" in lines, lines
    assert any(line.startswith("run 1: step 2/2") for line in lines), lines
    phases = [
        line for line in lines if line.endswith(("loading the model", "preparing data", "saving the model"))
    ]
    assert phases == ["run 1: loading the model", "run 1: preparing data", "run 1: saving the model"], lines
    assert "Estimate: about" in done.stderr and "Sized for" in done.stderr
    assert any("saved adapter" in line for line in lines) and lines[-1] == "Run 1: succeeded"

    shown = rlhf("runs", "show", "1")
    assert "succeeded, step 2/2" in shown.stdout and "0/0" not in shown.stdout
