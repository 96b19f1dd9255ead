"""The models and the migrations must describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401
from app.db import Base, make_engine
from app.migrations import current_revision, head_revision


def test_models_match_migrations(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=1)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree; run alembic revision --autogenerate: {diff}"


def test_database_is_at_head(db_url: str) -> None:
    assert current_revision(db_url) == head_revision(db_url)


def test_migrations_downgrade_and_upgrade_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from app.migrations import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision(url)
