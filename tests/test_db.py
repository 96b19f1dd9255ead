"""SQLite/PostgreSQL differences kept in app/db.py."""

from __future__ import annotations

from app.db import make_engine


def test_read_only_sessions_do_not_block_writers(db_url: str) -> None:
    """A long export reads in a read-only session; raters' writes go on meanwhile (on SQLite a
    normal transaction would hold the write lock for the whole export)."""
    import time

    from sqlalchemy import func, select

    from app.db import make_sessionmaker
    from app.models import User
    from tests.utils.factories import make_user

    engine = make_engine(db_url, pool_size=2)
    with make_sessionmaker(engine, read_only=True)() as reader:
        assert reader.scalar(select(func.count()).select_from(User)) == 0  # transaction open
        started = time.monotonic()
        with make_sessionmaker(engine)() as writer, writer.begin():
            make_user(writer, "rita")
        assert time.monotonic() - started < 5, "the write waited for the reader"
    engine.dispose()
