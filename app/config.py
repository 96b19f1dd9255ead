"""Every setting of RLHF Studio, read from the environment (or a `.env` file) once.

Names are the environment variables, upper-cased: ``DATABASE_URL``, ``SECRET_KEY`` and so on.
The defaults are the embedded ones: a SQLite file under the data directory and no external
service, so that ``rlhf up`` works on a bare machine. Outside development the secret key has no
working default: the process refuses to start until one is set.

The data directory does not depend on the working directory: ``DATA_DIR`` when set, else the
``data/`` folder of the source checkout the code runs from (``scripts/run``, an editable
install), else the user's data directory (``$XDG_DATA_HOME/rlhf-studio``, by default
``~/.local/share/rlhf-studio``) for an installed wheel. A ``.env`` file is read from the
checkout and then from the working directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"


def source_checkout() -> Path | None:
    """The source checkout this code runs from, or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "migrations").is_dir():
        return root
    return None


def default_data_dir() -> Path:
    """DATA_DIR's default: the checkout's data/, else the user's data directory."""
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "data"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rlhf-studio"


def _env_files() -> tuple[Path, ...]:
    checkout = source_checkout()
    return (*([checkout / ".env"] if checkout is not None else []), Path(".env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=_env_files(), env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="`production` refuses default secrets and marks cookies Secure.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded SQLite files, logs and (by default) artifacts live. Default: "
        "the checkout's data/ folder, or ~/.local/share/rlhf-studio for an installed wheel.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Default: sqlite:///<DATA_DIR>/rlhf.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    broker_url: str = Field(
        "",
        description="Celery broker. Default: kombu's SQLAlchemy transport on a SQLite file "
        "under DATA_DIR (no Redis needed); set it to a Redis URL in production.",
    )
    secret_key: str = Field(
        DEV_SECRET_KEY, description="Signs session cookies and CSRF tokens. Required in production."
    )
    artifacts_dir: Path = Field(
        default_factory=lambda data: Path(data["data_dir"]) / "artifacts",
        description="Local working space of workers (and the default store). Default: DATA_DIR/artifacts.",
    )
    storage_url: str = Field(
        "",
        description="Where finished models are published: a directory shared by all workers, or "
        "any fsspec URL (s3://bucket/prefix). Default: ARTIFACTS_DIR/models.",
    )
    stale_run_s: int = Field(
        600, description="A running run whose worker sent no heartbeat for this long is failed."
    )
    schedule_interval_s: int = Field(60, description="How often beat checks retraining schedules.")
    session_max_age_s: int = Field(
        14 * 24 * 3600, description="Longest a login lasts, however active (the cookie's lifetime too)."
    )
    session_idle_timeout_s: int = Field(
        2 * 3600, description="A login unused for this long ends (checked server-side)."
    )
    https_only: bool | None = Field(
        None, description="Mark cookies Secure. Default: on in production, off otherwise."
    )
    undo_window_s: int = Field(15 * 60, description="How long after a judgment undo is allowed.")
    max_upload_bytes: int = Field(50 * 1024 * 1024, description="Largest accepted import file.")
    login_rate_limit: int = Field(
        10, description="Failed logins allowed per username and client address per 5 minutes."
    )
    login_user_limit: int = Field(
        30,
        description="Failed logins per username from all addresses in an hour after which every "
        "further attempt for that name waits (30 s, doubling with each failure, at most 15 minutes).",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="Reverse proxies whose X-Forwarded-For/-Proto headers are trusted: "
        "comma-separated addresses or networks (10.0.0.0/8). Default: none, the client address "
        "is the connection's.",
    )
    db_pool_size: int = Field(
        20,
        description="Connections per web process (PostgreSQL), as many again in overflow; match it "
        "to the request threads (40) so that requests do not queue for a connection.",
    )

    processes_per_run: int = Field(
        0,
        ge=0,
        description="Processes (GPUs) a training run uses on its worker host through accelerate: "
        "0 = every visible GPU (1 on a CPU-only host); N > 1 also works on CPUs with the gloo "
        "backend, for tests.",
    )

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'rlhf.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if not self.storage_url:
            self.storage_url = str(self.artifacts_dir / "models")
        if self.https_only is None:
            self.https_only = self.environment == "production"
        if self.environment == "production" and (
            self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32
        ):
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least 32 characters in "
                "production, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
