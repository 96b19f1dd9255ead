"""Engine and sessions. Every difference between SQLite and PostgreSQL is kept in this file.

SQLite (the embedded default) gets WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE``
transactions: a writer takes the database lock when its transaction starts, so the
read-then-claim step of rater assignment can never interleave with another writer's. PostgreSQL
gets a connection pool; its assignment uses row locks with ``SKIP LOCKED`` (services/rating/assignment.py;
SQLAlchemy leaves ``FOR UPDATE`` out on SQLite by itself).

The services ask this module rather than the dialect: `is_postgres`, `insert_ignoring_conflicts`,
`grouped_median`, `set_local_work_mem` and `json_array_length`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, Insert, Select, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    pass


def normalize_url(url: str) -> str:
    """Accept the plain ``postgresql://`` spelling and use psycopg 3 for it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    """An engine for `url`. `pre_ping`: each PostgreSQL checkout first checks its connection (one
    round trip); without it, a connection that died (a server restart) fails its first
    statement, and SQLAlchemy then drops every pooled connection opened before the failure."""
    url = normalize_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # The app's queries are short index lookups; JIT compilation would cost more than it saves.
        connect_args={"options": "-c jit=off"},
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Read-only work (exports) begins deferred: under WAL it then never blocks writers.
        if conn.get_execution_options().get("sqlite_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on `engine`. `read_only` sessions (long exports) take no write lock on SQLite."""
    if read_only:
        engine = engine.execution_options(sqlite_read_only=True)
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session


# --- what differs between the two databases, for the services ---------------------------------


def is_postgres(session: Session) -> bool:
    """Whether the session's database is PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def insert_ignoring_conflicts(
    session: Session, table: Any, *, index_elements: list[str] | None = None
) -> Insert:
    """``INSERT ... ON CONFLICT [(index_elements)] DO NOTHING`` into `table` (a model or a Table).

    Add ``.values(...)`` / ``.returning(...)`` or execute it with a list of rows; a row that would
    violate a unique constraint is skipped (``RETURNING`` then gives nothing for it).
    """
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=index_elements)


def grouped_median(session: Session, query: Select[Any, Any]) -> dict[Any, float]:
    """The median of the second column of `query` per value of its first: ``{key: median}``.

    `query` selects (key, value) rows, filtered as needed and not grouped. PostgreSQL computes
    ``percentile_cont(0.5)`` in the database; SQLite has no percentile function, so the values
    are sorted in Python (embedded deployments are small).
    """
    if is_postgres(session):
        rows = query.subquery()
        key, value = rows.c[0], rows.c[1]
        grouped = select(key, func.percentile_cont(0.5).within_group(value)).group_by(key)
        return {k: float(median) for k, median in session.execute(grouped)}
    values: dict[Any, list[Any]] = {}
    for k, v in session.execute(query):
        values.setdefault(k, []).append(v)
    result = {}
    for k, found in values.items():
        found.sort()
        mid = len(found) // 2
        result[k] = float(found[mid] if len(found) % 2 else (found[mid - 1] + found[mid]) / 2)
    return result


def set_local_work_mem(session: Session, size: str) -> None:
    """Raise PostgreSQL's ``work_mem`` (e.g. ``"64MB"``) for the current transaction only.

    Large read-only aggregates then sort and hash in memory; SQLite has no such setting.
    """
    if is_postgres(session):
        session.execute(text(f"SET LOCAL work_mem = '{size}'"))


def json_array_length(session: Session, column: Any) -> ColumnElement[int]:
    """The length of a JSON array column (``jsonb_array_length`` on PostgreSQL)."""
    if is_postgres(session):
        return func.jsonb_array_length(column)
    return func.json_array_length(column)


def is_disconnect(error: BaseException) -> bool:
    """Whether `error` is a lost database connection (SQLAlchemy has discarded it)."""
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def ping(session: Session) -> None:
    """One round trip to the database; raises when it cannot be reached."""
    session.execute(text("SELECT 1"))
