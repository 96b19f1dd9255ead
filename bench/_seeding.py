"""Seeding helpers shared by the benches: bulk rows that name only the columns a bench cares
about, every other column taking the model's default, so that a column a later migration adds
does not break a bench's seed. A NOT NULL column with neither a model nor a server default is an
error that names it."""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Table


def model_defaults(table: Table, given: Iterable[str]) -> dict[str, Callable[[], Any]]:
    """For each column of `table` not in `given`, a function giving its model default (a
    callable default, such as a random key, is called once per row); columns PostgreSQL fills
    itself (server defaults, nullable columns) are left out."""
    given = set(given)
    defaults: dict[str, Callable[[], Any]] = {}
    for column in table.columns:
        if column.name in given:
            continue
        default = column.default
        if default is not None and default.is_scalar:
            value = default.arg  # type: ignore[attr-defined]
            defaults[column.name] = lambda value=value: value
        elif default is not None and default.is_callable:
            defaults[column.name] = lambda fn=default.arg: fn(None)  # type: ignore[attr-defined]
        elif not column.nullable and column.server_default is None and not column.primary_key:
            raise SystemExit(f"bench seed: {table.name}.{column.name} is NOT NULL and has no default")
    return defaults


def adapt(value: Any) -> Any:
    """A Python value as COPY and psycopg take it: JSON columns as text, enums as their value."""
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def copy_rows(cur: Any, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    """COPY `rows` (dicts with the same keys) into `table` on a psycopg cursor; returns the count."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    given = list(first)
    defaults = model_defaults(table, given)
    names = ", ".join([*given, *defaults])
    count = 0
    with cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in itertools.chain([first], rows):
            copy.write_row([*(adapt(row[k]) for k in given), *(adapt(fn()) for fn in defaults.values())])
            count += 1
    return count


def default_columns_sql(table: Table, given: Iterable[str]) -> tuple[str, str]:
    """For an `INSERT INTO table (given…, <names>) SELECT …, <values>`: the columns `given` leaves
    out that need a value, and their model defaults as SQL literals (a callable default is called
    once, so every row of the statement gets the same value)."""
    defaults = model_defaults(table, given)
    names = "".join(f", {name}" for name in defaults)
    values = "".join(f", {_literal(adapt(fn()))}" for fn in defaults.values())
    return names, values


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"
