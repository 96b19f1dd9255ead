"""Real processes for end-to-end tests: the web app under uvicorn and a Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET
from tests.utils.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def service_env(**values: str) -> dict[str, str]:
    """The environment of a process under test: this one's, without the server URLs it may
    carry (a test names the servers it gives the process: the harness's own), plus `values`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL", "REDIS_URL")}
    env.update({"ENVIRONMENT": "test", "SECRET_KEY": TEST_SECRET, "TOKENIZERS_PARALLELISM": "false"})
    env.update(values)
    return env


@contextmanager
def web_server(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200, 30, process, log)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=20)


@contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker consuming train and default, in its own process group (so a test can kill it)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "train,default",
             "--pool", "solo", "--loglevel", "INFO", "-n", f"test-{os.getpid()}-{time.time_ns()}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            _wait(lambda: b" ready." in log.read_bytes(), 60, process, log)
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def _wait(ready, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise TimeoutError(f"not ready after {timeout} s:\n{log.read_text()[-4000:]}")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
