"""Databases, sessions, users and clients for the tests, and the servers they run on.

Database tests run on both SQLite and PostgreSQL (the `db_url` fixture is parametrised). The tests
bring their own servers: a private PostgreSQL cluster (initdb into a temporary directory, a free
port) and a private `redis-server`, started on first use from the binaries on this machine and
removed at the end of the session (tests/utils/services.py). TEST_DATABASE_URL and TEST_REDIS_URL
point the tests at other servers instead (a database named after TEST_DATABASE_URL's plus the
process id is created on it and dropped at the end; TEST_REDIS_URL's db is flushed); the tests
never restart those. Without the binaries (or the given server) the tests that need them are
skipped with the reason, unless RLHF_REQUIRE_SERVICES=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import migrations
from app.db import Base, make_engine, make_sessionmaker, normalize_url
from tests.utils.services import PrivatePostgres, PrivateRedis, postgres_bindir

REQUIRE_SERVICES = os.environ.get("RLHF_REQUIRE_SERVICES") == "1"
# Servers given explicitly; None: the harness starts its own.
GIVEN_PG_URL = os.environ.get("TEST_DATABASE_URL") or None
GIVEN_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
# The test database on the private cluster; on a given server each test session gets its own
# (several sessions may share one server), dropped at the end.
PRIVATE_DATABASE = "rlhf_test"
_given_databases: list[str] = []


def _service_missing(what: str, error: Exception | str) -> NoReturn:
    message = (
        f"{what} is not reachable ({error.__class__.__name__}: {error})"
        if isinstance(error, Exception)
        else f"{what}: {error}"
    )
    if REQUIRE_SERVICES:
        pytest.fail(message + " and RLHF_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _recreate_pg_database(url: str, *, create: bool = True) -> None:
    parsed = make_url(url)
    admin = make_engine(parsed.set(database="postgres").render_as_string(False), pool_size=1)
    name = parsed.database
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if create:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """The harness's own PostgreSQL cluster (the only server a test may stop or restart)."""
    bindir = postgres_bindir()
    if bindir is None:
        _service_missing(
            "PostgreSQL",
            "its server binaries (initdb, pg_ctl, postgres) are not installed "
            "(apt-get install postgresql, or set TEST_DATABASE_URL)",
        )
    try:
        server = PrivatePostgres(bindir).start()
    except Exception as error:  # noqa: BLE001 - reported as the reason
        _service_missing("PostgreSQL", f"a private cluster did not start ({error})")
    yield server
    for engine in [e for url, e in _engines.items() if make_url(url).port == server.port]:
        engine.dispose()
    server.remove()


@pytest.fixture(scope="session")
def pg_database(request: pytest.FixtureRequest) -> str:
    """The URL of the session's migrated PostgreSQL test database, created by the harness."""
    if GIVEN_PG_URL is None:
        server: PrivatePostgres = request.getfixturevalue("private_postgres")
        url = normalize_url(server.url(PRIVATE_DATABASE))
    else:
        url = normalize_url(GIVEN_PG_URL + f"_{os.getpid()}")
        _given_databases.append(url)
    try:
        _recreate_pg_database(url)
    except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
        _service_missing("PostgreSQL", error)
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of the session, empty at the start: on the harness's own
    `redis-server`, or TEST_REDIS_URL's (flushed)."""
    import redis

    if GIVEN_REDIS_URL is not None:
        try:
            client = redis.Redis.from_url(GIVEN_REDIS_URL, socket_connect_timeout=2)
            client.flushdb()
            client.close()
        except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
            _service_missing(f"Redis at {GIVEN_REDIS_URL}", error)
        yield GIVEN_REDIS_URL
        return
    server = private_redis_or_skip()
    yield server.url()
    server.remove()


def private_redis_or_skip() -> PrivateRedis:
    """A started private `redis-server` (the caller removes it); skips, or fails under
    RLHF_REQUIRE_SERVICES=1, when redis-server is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        _service_missing("Redis", "redis-server is not installed (apt-get install redis-server)")
    try:
        return PrivateRedis(executable).start()
    except Exception as error:  # noqa: BLE001 - reported as the reason
        _service_missing("Redis", f"a private redis-server did not start ({error})")


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrations.upgrade(url)
    return url


_engines: dict[str, Engine] = {}


def _engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url, pool_size=5)
    return _engines[url]


def _clean(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty, migrated database of each kind."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = request.getfixturevalue("sqlite_database")
    _clean(_engine_for(url))
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """An empty, migrated PostgreSQL database (for tests that need PostgreSQL itself)."""
    _clean(_engine_for(pg_database))
    return pg_database


@pytest.fixture
def engine(db_url: str) -> Engine:
    return _engine_for(db_url)


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for engine in _engines.values():
        engine.dispose()
    for url in _given_databases:
        # Best effort: a database left behind is dropped by the next run of this process id.
        with contextlib.suppress(Exception):
            _recreate_pg_database(url, create=False)


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


# --- the web app ----------------------------------------------------------------------------

TEST_SECRET = "test-secret-key-" + "x" * 32


def make_settings(database_url: str, **overrides: object):  # type: ignore[no-untyped-def]
    from app.config import Settings

    values: dict[str, object] = {
        "database_url": database_url,
        "environment": "test",
        "secret_key": TEST_SECRET,
        "login_rate_limit": 5,
        # No broker listens here: runs launched from the web app stay queued, waiting for it.
        "broker_url": "redis://127.0.0.1:9/0",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def app(db_url: str):  # type: ignore[no-untyped-def]
    from app.web.app import create_app

    application = create_app(make_settings(db_url))
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
