"""Databases, sessions, users and clients for the tests.

Database tests run on both SQLite and PostgreSQL (the `db_url` fixture is parametrised). The
PostgreSQL server is taken from TEST_DATABASE_URL (default: the local server, database
`rlhf_test`, created afresh for each test session). Without a reachable server those tests are
skipped, unless RLHF_REQUIRE_SERVICES=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import migrations
from app.db import Base, make_engine, make_sessionmaker, normalize_url

REQUIRE_SERVICES = os.environ.get("RLHF_REQUIRE_SERVICES") == "1"
# Each test session gets its own database (several sessions may run at once on one server);
# it is dropped at the end.
PG_URL = normalize_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/rlhf_test")
    + f"_{os.getpid()}"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
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
def pg_database() -> str:
    try:
        _recreate_pg_database(PG_URL)
    except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
        _service_missing("PostgreSQL", error)
    migrations.upgrade(PG_URL)
    return PG_URL


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
    if PG_URL in _engines:
        # Best effort: a database left behind is dropped by the next run of this process id.
        with contextlib.suppress(Exception):
            _recreate_pg_database(PG_URL, create=False)


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
