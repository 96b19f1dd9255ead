"""The tests run on servers the harness started (or was given), never quietly on the machine's.

Without TEST_DATABASE_URL / TEST_REDIS_URL the PostgreSQL database and the Redis server are the
harness's own: a cluster whose data directory is in the harness's temporary directory, listening
on a port of its own, and a `redis-server` likewise. With them, the database is one the harness
created for this session on the given server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import migrations
from app.db import make_engine
from tests.conftest import GIVEN_PG_URL, GIVEN_REDIS_URL, PRIVATE_DATABASE

MACHINE_PG_PORT = 5432
MACHINE_REDIS_PORT = 6379


@pytest.mark.postgres
def test_the_postgresql_database_is_one_the_harness_made(
    pg_database: str, request: pytest.FixtureRequest
) -> None:
    engine = make_engine(pg_database, pool_size=1)
    try:
        with engine.connect() as conn:
            name = conn.scalar(text("SELECT current_database()"))
            port = conn.scalar(text("SELECT inet_server_port()"))
            data_directory = conn.scalar(text("SHOW data_directory"))
    finally:
        engine.dispose()
    assert migrations.current_revision(pg_database) == migrations.head_revision(pg_database)
    if GIVEN_PG_URL is not None:
        assert name == f"{make_url(GIVEN_PG_URL).database}_{os.getpid()}"
        return
    server = request.getfixturevalue("private_postgres")
    assert name == PRIVATE_DATABASE
    assert port == server.port != MACHINE_PG_PORT
    assert Path(data_directory) == server.data_dir
    assert server.root.parent in {Path(tempfile.gettempdir()).resolve(), Path("/tmp")}


def test_the_redis_server_is_the_harness_own(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        info = client.info("server")
        directory = client.config_get("dir")["dir"]
    finally:
        client.close()
    if GIVEN_REDIS_URL is not None:
        assert info["tcp_port"] == make_url(GIVEN_REDIS_URL).port
        return
    assert info["tcp_port"] == make_url(redis_url).port != MACHINE_REDIS_PORT
    assert Path(directory).name.startswith("rlhf-test-redis-")
