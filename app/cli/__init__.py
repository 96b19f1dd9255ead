"""The `rlhf` command: the Typer app and its entry point. Each command group is a module here
with a `register(cli)`; `rlhf --help` and `rlhf COMMAND --help` document every option."""

from __future__ import annotations

import typer

from app.cli._common import where
from app.config import get_settings

cli = typer.Typer(
    help="RLHF Studio: collect human preference labels and turn them into better models.",
    no_args_is_help=True,
    add_completion=False,
)

# Registered first, in this order, which is the order of `rlhf --help`; the other modules follow
# by name. Modules whose name starts with "_" hold shared helpers.
FIRST = ("serving", "demo", "database", "users", "projects", "imports")


def _register_command_groups() -> None:
    """Command groups that live in their own modules (app/cli/<name>.py)."""
    import importlib
    import pkgutil

    found = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    for name in (*FIRST, *(name for name in found if name not in FIRST)):
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_command_groups()


def main() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        cli()
    except (OperationalError, ProgrammingError) as error:
        # A table missing under a command that got past the check: a half-migrated database.
        text = str(error.orig or error)
        if "no such table" not in text and "does not exist" not in text:
            raise
        url = get_settings().database_url
        raise SystemExit(
            f"error: the database at {where(url)} lacks a table ({text.splitlines()[0]}): "
            "run `rlhf db upgrade` (or scripts/run)"
        ) from None


if __name__ == "__main__":
    main()
