"""Run one trainer in several processes on this host, through `accelerate launch`.

Parent side (`run_distributed`, called by the runner when a run should use more than one
process): writes the job to `JOB.json` in the run's work dir, starts

    python -m accelerate.commands.launch --multi_gpu --num_processes N ... -m worker.training.launch JOB.json

and waits, turning rank 0's event lines into calls on its own reporter (the database one), the
other output into throttled log lines, and a cancel request into a `STOP` file. When the
children are done, rank 0's `result.json` says what happened.

Child side (`main`, one per rank): joins the process group, runs the same trainer function as
the single-process path, with a `DistributedReporter`. TRL's trainers pick the distributed
environment up by themselves; PPO shards its batch and all-reduces its gradients (ppo.py).

Why `--multi_gpu` also on CPU: accelerate's `--cpu` goes through its "simple" launcher, which
starts a single process (multi-CPU needs MPI there); `--multi_gpu` goes through torchrun, and the
child then asks for the gloo backend itself (`PartialState(cpu=True)`) when there is no CUDA.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from worker.training.base import Cancelled, ModelRef, Reporter, TrainResult

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
STOP_FILE = "STOP"
LOG_EVERY_S = 5.0  # plain child output reaches the run log at most this often
LOG_MAX_LINES = 50  # ... and at most this many lines at a time (the rest is in the error tail)
TAIL_LINES = 60  # lines of child output quoted in the error of a failed launch
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# What both sides share: how to run a trainer from plain data
# ---------------------------------------------------------------------------------------------


def resolve_processes(setting: int) -> int:
    """`processes_per_run` -> how many processes: 0 means every visible GPU (1 without CUDA)."""
    if setting > 0:
        return setting
    import torch

    return max(1, torch.cuda.device_count())


def run_trainer(
    *,
    kind: str,
    config: dict[str, Any],
    base: ModelRef,
    reward: ModelRef | None,
    data: list[dict[str, Any]],
    output_dir: Path,
    reporter: Reporter,
    device: str | None = None,
) -> TrainResult:
    """Call the kind's trainer (its entry point in worker/methods.py). Imports are local: the
    table pulls in the database layer, each trainer torch and its libraries."""
    from app.models import RunKind
    from app.run_kinds import KINDS
    from worker.methods import METHODS, Work

    if kind not in set(KINDS) or not KINDS[RunKind(kind)].distributed:
        raise ValueError(f"run kind {kind!r} cannot be launched as a training job")
    work = Work(kind=RunKind(kind), config=config, data=data, base=base,
                models={"reward": reward} if reward is not None else {}, output_dir=output_dir,
                device=device)  # fmt: skip
    result: TrainResult = METHODS[work.kind].run(work, reporter)
    return result


def _ref_from_dict(value: dict[str, Any] | None) -> ModelRef | None:
    if value is None:
        return None
    return ModelRef(
        uri=value["uri"],
        is_adapter=value.get("is_adapter", False),
        base=_ref_from_dict(value.get("base")),
        gguf_file=value.get("gguf_file"),
    )


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    """A free TCP port for the rendezvous, so that runs on one host do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(job_file: Path, num_processes: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu",  # torchrun, one process per rank (see the module docstring)
        "--num_processes", str(num_processes),
        "--num_machines", "1",
        "--mixed_precision", "no",  # each trainer decides its own precision from its config
        "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "worker.training.launch", str(job_file),
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The children import `worker.*` from this checkout, wherever the parent was started from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # events must arrive while training, not at exit
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Progress bars (N ranks x datasets, weights, ...) would flood the run log.
    for name in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        env.setdefault(name, "1")
    return env


def run_distributed(
    *,
    kind: str,
    config: dict[str, Any],
    base: ModelRef,
    reward: ModelRef | None,
    data: list[dict[str, Any]],
    output_dir: Path,
    work_dir: Path,
    reporter: Reporter,
    num_processes: int,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> TrainResult:
    """Train in `num_processes` processes and wait; same contract as the trainers.

    Raises `Cancelled` when the children stopped because the reporter asked to, and
    `RuntimeError` (with the tail of their output) when they failed or ran past `timeout_s`
    (tests use it, so that a deadlock fails instead of hanging).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file, result_file, stop_file = work_dir / JOB_FILE, work_dir / RESULT_FILE, work_dir / STOP_FILE
    for stale in (result_file, stop_file):
        stale.unlink(missing_ok=True)
    job = {
        "kind": kind,
        "config": config,
        "base": asdict(base),
        "reward": asdict(reward) if reward is not None else None,
        "data": data,
        "output_dir": str(output_dir),
        "stop_file": str(stop_file),
        "result_file": str(result_file),
    }
    job_file.write_text(json.dumps(job))
    command = launch_command(job_file, num_processes)
    reporter.log(f"launching {kind} in {num_processes} processes")

    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        cwd=PROJECT_ROOT,
        env=_child_env(),
        start_new_session=True,  # its own process group: `_kill` reaches torchrun's children too
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        _follow(process, reporter, stop_file, tail, poll_s, deadline)
        returncode = process.wait()
    finally:
        if process.poll() is None:  # the parent itself failed (e.g. the database): no orphans
            _kill(process)
            process.wait()

    result = json.loads(result_file.read_text()) if result_file.exists() else None
    if result is not None and result.get("status") == "cancelled":
        raise Cancelled(result.get("message", "cancelled"))
    if returncode != 0 or result is None:
        output = "\n".join(tail)
        raise RuntimeError(f"distributed {kind} training failed (exit code {returncode}):\n{output}")
    return TrainResult(
        output_dir=Path(result["output_dir"]),
        is_adapter=bool(result["is_adapter"]),
        metrics=result["metrics"],
    )


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill the launcher and every rank: the process group it leads (see `start_new_session`)."""
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.killpg(process.pid, signal.SIGKILL)


def _follow(
    process: subprocess.Popen[str],
    reporter: Reporter,
    stop_file: Path,
    tail: deque[str],
    poll_s: float,
    deadline: float | None,
) -> None:
    """Relay the children's output until they exit; write `stop_file` once a stop is asked for.

    A thread reads the pipe (a blocking read would keep us from noticing a cancel while the
    children are silent); this loop dispatches lines and checks the reporter.
    """
    from worker.training.distributed import parse_event

    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="launch-output", daemon=True).start()
    pending: list[str] = []
    last_log = time.monotonic()

    def flush_log() -> None:
        nonlocal pending, last_log
        if pending:
            shown, skipped = pending[-LOG_MAX_LINES:], len(pending) - LOG_MAX_LINES
            prefix = [f"... {skipped} lines skipped"] if skipped > 0 else []
            reporter.log("\n".join(prefix + shown))
        pending, last_log = [], time.monotonic()

    handlers: dict[str, Callable[[dict[str, Any]], None]] = {
        "step": lambda e: reporter.step(int(e["step"]), int(e["total"]), dict(e["metrics"])),
        "log": lambda e: reporter.log(str(e["message"])),
        "phase": lambda e: reporter.phase(str(e["name"])),
    }
    done = False
    while not done:
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            line = ""
        if line is None:
            done = True
        elif line:
            text, event = parse_event(line)
            if text.strip():
                tail.append(text)
                pending.append(text)
            if event is not None and event.get("type") in handlers:
                handlers[str(event["type"])](event)
        if not stop_file.exists() and reporter.should_stop():
            stop_file.write_text("stop\n")  # every rank checks it at its next step
        if done or time.monotonic() - last_log >= LOG_EVERY_S:
            flush_log()
        if not done and deadline is not None and time.monotonic() > deadline:
            tail.append("killed: the launch ran past its timeout")
            _kill(process)
            done = True


# ---------------------------------------------------------------------------------------------
# Child side: one process per rank
# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    from worker.training.distributed import DistributedReporter, barrier, is_main_process

    job = json.loads(Path(argv[0]).read_text())
    cpu = not torch.cuda.is_available()
    if cpu:
        # transformers' TrainingArguments rebuilds accelerate's state from scratch, with `cpu`
        # only from `use_cpu` or this variable; without it a CPU rank sees no distributed setup
        # and trains alone on all the data.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    # Join the process group before any trainer code: gloo without CUDA (tests, CPU hosts),
    # NCCL with one GPU per rank.
    state = PartialState(cpu=cpu)
    reporter = DistributedReporter(Path(job["stop_file"]))
    result_file = Path(job["result_file"])
    try:
        try:
            result = run_trainer(
                kind=job["kind"],
                config=job["config"],
                base=_ref_from_dict(job["base"]),  # type: ignore[arg-type]
                reward=_ref_from_dict(job["reward"]),
                data=job["data"],
                output_dir=Path(job["output_dir"]),
                reporter=reporter,
                device=str(state.device),
            )
        except Cancelled as stop:
            # Every rank gets here at the same step (should_stop is all-reduced): exit cleanly,
            # so that the launcher reports success and the parent reads the outcome below.
            if is_main_process():
                result_file.write_text(json.dumps({"status": "cancelled", "message": str(stop)}))
            barrier()
            return 0
        barrier()  # rank 0 has saved (trainers save on the main process only)
        if is_main_process():
            result_file.write_text(
                json.dumps(
                    {
                        "status": "ok",
                        "output_dir": str(result.output_dir),
                        "is_adapter": result.is_adapter,
                        "metrics": result.metrics,
                    }
                )
            )
        return 0
    finally:
        # Without it gloo aborts the process at exit ("terminate called without an active
        # exception") and torchrun reports a failure.
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
