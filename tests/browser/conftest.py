"""A live server and a real browser (Debian's Chromium driven by Playwright) for end-to-end tests.

`live_server` runs the app exactly as production does (`uvicorn app.asgi:app` in its own process,
configured through the environment) on an empty PostgreSQL database of the harness, and hands the test a
sessionmaker on that database for seeding rows and checking what the browser stored.

Playwright is used through its Python package only; no browser is downloaded: the system's
Chromium at /usr/bin/chromium is launched. Without it (or without Playwright) the browser tests
are skipped, unless RLHF_REQUIRE_SERVICES=1, where they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_sessionmaker
from tests.utils.services import free_port

CHROMIUM = Path(os.environ.get("RLHF_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]
REQUIRE_SERVICES = os.environ.get("RLHF_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[2]
LIVE_SECRET = "browser-test-secret-key-" + "y" * 40
STARTUP_TIMEOUT_S = 30.0

T = TypeVar("T")


def _unavailable(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " and RLHF_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@dataclass
class LiveServer:
    base_url: str
    sessionmaker: sessionmaker[Session]
    engine: Engine

    def url(self, path: str) -> str:
        return self.base_url + path

    def wait_for(self, read: Callable[[Session], T], check: Callable[[T], bool], timeout: float = 10.0) -> T:
        """Poll the database (each time in a fresh session) until `check(read(session))` holds.

        Returns the last value read; the caller asserts on it, so a timeout shows what was there.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.sessionmaker() as session:
                value = read(session)
            if check(value) or time.monotonic() > deadline:
                return value
            time.sleep(0.02)


def _wait_until_up(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            last_error = error
        time.sleep(0.1)
    state = (
        f"exited with code {process.returncode}"
        if process.poll() is not None
        else f"did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s ({last_error!r})"
    )
    process.kill()
    process.wait(timeout=10)
    output = log.read_text(errors="replace")[-6000:]
    pytest.fail(f"the live server {state}; its output:\n{output}", pytrace=False)


@pytest.fixture
def live_server(pg_url: str) -> Iterator[LiveServer]:
    """The real app in a uvicorn subprocess on an empty, migrated PostgreSQL database."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "ENVIRONMENT": "test",
        "SECRET_KEY": LIVE_SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with tempfile.NamedTemporaryFile(prefix="live-server-", suffix=".log", delete=False) as handle:
        log = Path(handle.name)
    engine = make_engine(pg_url, pool_size=2)
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, base_url, log)
        yield LiveServer(base_url=base_url, sessionmaker=make_sessionmaker(engine), engine=engine)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        engine.dispose()
        log.unlink(missing_ok=True)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests (contexts keep the tests apart). Package
    scope: Playwright's sync API keeps an event loop running in this thread until it stops, and
    later tests must be free to start their own."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _unavailable(f"Playwright is not installed ({error}); `pip install playwright`")
    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except Exception as error:  # noqa: BLE001 - any launch failure means "no browser"
            _unavailable(f"Chromium at {CHROMIUM} did not start ({error})")
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context: no cookies or storage from other tests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
