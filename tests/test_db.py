"""SQLite/PostgreSQL differences kept in app/db.py."""

from __future__ import annotations

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

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


def test_insert_ignoring_conflicts_skips_existing_rows(session: Session) -> None:
    from app.db import insert_ignoring_conflicts
    from app.models import User

    rows = [{"username": name, "password_hash": "!", "role": "rater"} for name in ("ann", "bob")]
    session.execute(insert_ignoring_conflicts(session, User.__table__), rows[:1])
    session.execute(insert_ignoring_conflicts(session, User.__table__), rows)
    assert sorted(session.scalars(select(User.username))) == ["ann", "bob"]
    again = insert_ignoring_conflicts(session, User, index_elements=["username"])
    assert session.execute(again.values(**rows[0]).returning(User.id)).scalar_one_or_none() is None


def test_grouped_median_is_the_median_per_key(session: Session) -> None:
    from app.db import grouped_median

    values = {"a": [5, 1, 3], "b": [4, 1, 2, 10], "c": [7]}
    query = union_all(
        *[select(literal(k).label("k"), literal(v).label("v")) for k, vs in values.items() for v in vs]
    )
    pairs = query.subquery()
    assert grouped_median(session, select(pairs.c.k, pairs.c.v)) == {"a": 3.0, "b": 3.0, "c": 7.0}


def test_dialect_expressions(session: Session) -> None:
    from datetime import UTC, datetime

    from app.db import is_postgres, json_array_length, set_local_work_mem
    from app.models import Comparison, Judgment, RaterHour, Role, User
    from tests.utils.factories import make_pair, make_project, make_user

    set_local_work_mem(session, "8MB")
    project = make_project(session, "dialects", flags=["unsafe", "long"])
    pair = make_pair(session, project, "p", "a", "b")
    rater = make_user(session, "rita", Role.rater)
    session.add(
        Judgment(
            comparison_id=pair.id,
            rater_id=rater.id,
            project_id=project.id,
            choice="A",
            strength=1,
            a_on_left=True,
            flags=["unsafe", "long"],
            created_at=datetime(2026, 1, 2, 13, 45, tzinfo=UTC),
        )
    )
    session.flush()
    flags = session.scalar(select(json_array_length(session, Judgment.flags)))
    assert flags == 2
    # The tally trigger files the judgment under its UTC clock hour, in either database.
    assert str(session.scalar(select(RaterHour.hour))).startswith("2026-01-02 13")
    assert is_postgres(session) == (session.get_bind().dialect.name == "postgresql")
    assert session.scalar(select(func.count()).select_from(Comparison)) == 1
    assert session.scalar(select(func.count()).select_from(User)) == 1
