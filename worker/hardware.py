"""What this host trains on, reported to the database (app/services/workers.py): its device, how
many, one device's memory (the machine's RAM on CPU) and its CPUs. Workers report when they start
and with every run's heartbeat; a thread keeps an idle worker's row live."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.services import workers

log = logging.getLogger(__name__)
# An idle worker reports this often (app.services.workers.LIVE_AFTER is three times longer).
REPORT_EVERY_S = 60.0


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu", "cuda:<name of device 0>", "mps"
    device_count: int
    memory_bytes: int | None
    cpu_count: int | None


def hostname() -> str:
    return socket.gethostname()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@functools.cache
def detect() -> Hardware:
    """The host's devices, found once per process (torch is imported here, in the worker only)."""
    import torch

    cpus = os.cpu_count()
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return Hardware(f"cuda:{properties.name}", torch.cuda.device_count(), properties.total_memory, cpus)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Hardware("mps", 1, _ram_bytes(), cpus)
    return Hardware("cpu", 0, _ram_bytes(), cpus)


def report(factory: sessionmaker[Session]) -> Hardware:
    """Create or update this host's worker row, heartbeat now."""
    found = detect()
    with session_scope(factory) as session:
        workers.report_worker(session, hostname=hostname(), **asdict(found))
    return found


def keep_reporting(factory: sessionmaker[Session], every_s: float = REPORT_EVERY_S) -> threading.Thread:
    """Report now and then every `every_s` seconds from a daemon thread (a Celery worker's main
    process, so that an idle worker stays live for the launch form)."""
    report(factory)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                report(factory)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                log.warning("could not report this worker's heartbeat", exc_info=True)

    thread = threading.Thread(target=loop, name="worker-heartbeat", daemon=True)
    thread.start()
    return thread
