"""`rlhf up` (everything on one machine: migrate, serve, a worker and beat) and `rlhf serve` (the
production launch: several web processes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from app.cli._common import console
from app.cli.database import upgrade
from app.cli.demo import register_demo_model, seed_demo
from app.config import get_settings


def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Seed the demo project and users first.")] = False,
    worker: Annotated[
        bool, typer.Option(help="Also run a training worker and beat in the background.")
    ] = True,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    worker_after: Annotated[
        Path | None,
        typer.Option(
            help="Start the worker and beat (and register the demo model) only once this file exists: "
            "scripts/run serves the web app while the training stack installs, then touches it."
        ),
    ] = None,
) -> None:
    """Everything on one machine: migrate, then serve the app, with a worker and beat.

    Embedded defaults: SQLite under DATA_DIR for the database and the task queue, no Redis.
    """
    import subprocess

    settings = get_settings()
    upgrade()
    waiting = worker and worker_after is not None and not worker_after.exists()
    if demo:
        seed_demo(register_model=not waiting)
    children: list[subprocess.Popen[bytes]] = []

    def start_worker() -> None:
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, args in (
            ("worker", ["worker", "-Q", "train,default", "--pool", "solo", "--loglevel", "INFO"]),
            ("beat", ["beat", "--schedule", str(settings.data_dir / "celerybeat-schedule")]),
        ):
            log_file = (log_dir / f"{name}.log").open("ab")
            command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", *args]
            children.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
        console.print(f"Worker and beat started (logs in {log_dir}).")

    def start_worker_when_ready() -> None:
        import time

        assert worker_after is not None
        while not worker_after.exists():
            time.sleep(2)
        if demo:
            register_demo_model()
        start_worker()

    if waiting:
        import threading

        threading.Thread(target=start_worker_when_ready, name="worker-after", daemon=True).start()
        console.print("The worker starts once the training stack is installed; labeling works already.")
    elif worker:
        start_worker()
    console.print(
        f"RLHF Studio on [bold]http://{host}:{port}[/bold]  (database: {_redact(settings.database_url)})"
        + (f"\nLog in at http://{host}:{port}/login (the rater labels pairs at /rate)." if demo else "")
    )
    import uvicorn

    try:
        # The app trusts forwarding headers itself, from FORWARDED_ALLOW_IPS only.
        uvicorn.run(
            "app.asgi:app", host=host, port=port, reload=reload, log_level="info", proxy_headers=False
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


WORKER_HEALTHCHECK_S = 60  # seconds a web process may take to answer the supervisor's ping


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Web processes (about one per core).")] = 2,
) -> None:
    """Production launch: several web processes, no auto-migration (run `rlhf db upgrade`)."""
    import uvicorn

    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # The app trusts X-Forwarded-For/-Proto itself, from FORWARDED_ALLOW_IPS only (default:
        # nobody); uvicorn's own handling would trust any local address.
        proxy_headers=False,
        # uvicorn's supervisor kills a worker that does not answer its ping in time; on a busy
        # host (5 s by default) that killed live workers mid-request, and raters saw errors.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def register(cli: typer.Typer) -> None:
    cli.command()(up)
    cli.command()(serve)
