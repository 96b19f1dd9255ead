"""tallies: running counts of the judgments kept by triggers (app/models/tallies.py), filled
from the judgments already stored; indexes for the median time per rater, the edit judgments
and the pairs triage decided

Revision ID: 0016_tallies
Revises: 0015_triage
Create Date: 2026-12-06 09:00:00

The triggers live on ``judgments``. On SQLite a later migration that rebuilds ``judgments``
(``batch_alter_table`` copies the table) drops them: such a migration must call
``create_triggers`` of this module again (``tests/services/test_tallies.py`` fails otherwise).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_tallies"
down_revision: str | None = "0015_triage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("comparison_tallies", "rater_tallies", "rater_hours", "rater_flag_tallies", "rater_pair_tallies")
_SIGNED = (("s_m2", -2), ("s_m1", -1), ("s_0", 0), ("s_p1", 1), ("s_p2", 2))


def _counts(*names: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column(name, sa.Integer(), nullable=False) for name in names]


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], ondelete="CASCADE")


def _create_tables() -> None:
    signed = [name for name, _ in _SIGNED]
    op.create_table(
        "comparison_tallies",
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        *_counts("votes", "a", "b", "tie", *signed, "chars_a", "chars_b"),
        _fk("comparison_id", "comparisons"),
        _fk("project_id", "projects"),
        sa.PrimaryKeyConstraint("comparison_id", "source"),
    )
    op.create_index("ix_comparison_tallies_project", "comparison_tallies", ["project_id", "source"])

    def rater_key() -> list[sa.Column]:  # type: ignore[type-arg]
        return [
            sa.Column("project_id", sa.Integer(), nullable=False),
            sa.Column("rater_id", sa.Integer(), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
        ]

    op.create_table(
        "rater_tallies",
        *rater_key(),
        *_counts("judgments", "ties", "both_bad", "non_tie", "left_picks", "flagged", *signed),
        _fk("project_id", "projects"),
        _fk("rater_id", "users"),
        sa.PrimaryKeyConstraint("project_id", "rater_id", "source"),
    )
    op.create_table(
        "rater_hours",
        *rater_key(),
        sa.Column("hour", sa.DateTime(), nullable=False),
        *_counts("judgments"),
        _fk("project_id", "projects"),
        _fk("rater_id", "users"),
        sa.PrimaryKeyConstraint("project_id", "rater_id", "source", "hour"),
    )
    op.create_table(
        "rater_flag_tallies",
        *rater_key(),
        sa.Column("flag", sa.String(200), nullable=False),
        *_counts("judgments"),
        _fk("project_id", "projects"),
        _fk("rater_id", "users"),
        sa.PrimaryKeyConstraint("project_id", "rater_id", "source", "flag"),
    )
    op.create_table(
        "rater_pair_tallies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        *_counts("pairs", "agreeing"),
        _fk("project_id", "projects"),
        _fk("rater_id", "users"),
        _fk("other_id", "users"),
        sa.PrimaryKeyConstraint("project_id", "rater_id", "other_id"),
    )
    op.create_index("ix_rater_pair_tallies_other", "rater_pair_tallies", ["project_id", "other_id"])


# --- what one judgment adds to each table (w = 1 added, -1 removed) ------------------------------


def _signed_counts(r: str, w: str) -> str:
    signed = (
        f"CASE WHEN {r}.choice = 'A' THEN {r}.strength WHEN {r}.choice = 'B' THEN -{r}.strength ELSE 0 END"
    )
    return ", ".join(f"{w} * CASE WHEN {signed} = {v} THEN 1 ELSE 0 END AS {name}" for name, v in _SIGNED)


def _flagged(r: str, postgres: bool) -> str:
    typeof, length = (
        ("jsonb_typeof", "jsonb_array_length") if postgres else ("json_type", "json_array_length")
    )
    return f"CASE WHEN {typeof}({r}.flags) <> 'array' THEN 0 WHEN {length}({r}.flags) > 0 THEN 1 ELSE 0 END"


def _hour(r: str, postgres: bool) -> str:
    if postgres:
        return f"date_trunc('hour', {r}.created_at AT TIME ZONE 'UTC')"
    return f"substr({r}.created_at, 1, 13) || ':00:00.000000'"


def _flag_elements(r: str, postgres: bool) -> tuple[str, str]:
    """A FROM item listing the flags of `r` (an array, else none), and its flag column."""
    if postgres:
        array = f"CASE WHEN jsonb_typeof({r}.flags) = 'array' THEN {r}.flags ELSE '[]'::jsonb END"
        return f"jsonb_array_elements_text({array}) AS f(flag)", "f.flag"
    array = f"CASE WHEN json_type({r}.flags) = 'array' THEN {r}.flags ELSE '[]' END"
    return f"json_each({array}) AS f", "f.value"


_COMPARISON_COLUMNS = "comparison_id, source, project_id, votes, a, b, tie, s_m2, s_m1, s_0, s_p1, s_p2"
_RATER_COLUMNS = "project_id, rater_id, source, judgments, ties, both_bad, non_tie, left_picks, flagged, " + (
    "s_m2, s_m1, s_0, s_p1, s_p2"
)


def _vote_rows(r: str, w: str, postgres: bool) -> str:
    """Per vote: its keys and what it adds to the comparison and rater tallies."""
    return (
        f"SELECT {r}.comparison_id AS comparison_id, {r}.project_id AS project_id, {r}.rater_id AS rater_id, "
        f"{r}.source AS source, {r}.created_at AS created_at, {r}.flags AS flags, "
        f"{w} AS votes, "
        f"{w} * CASE WHEN {r}.choice = 'A' THEN 1 ELSE 0 END AS a, "
        f"{w} * CASE WHEN {r}.choice = 'B' THEN 1 ELSE 0 END AS b, "
        f"{w} * CASE WHEN {r}.choice = 'tie' THEN 1 ELSE 0 END AS tie, "
        f"{w} * CASE WHEN {r}.both_bad THEN 1 ELSE 0 END AS both_bad, "
        f"{w} * CASE WHEN ({r}.choice = 'A' AND {r}.a_on_left) OR ({r}.choice = 'B' AND NOT {r}.a_on_left) "
        f"THEN 1 ELSE 0 END AS left_picks, "
        f"{w} * {_flagged(r, postgres)} AS flagged, "
        f"{_signed_counts(r, w)}"
    )


def _add(table: str, keys: str, columns: Sequence[str]) -> str:
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns)
    return f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"


_SIGNED_NAMES = [name for name, _ in _SIGNED]
_SIGNED_SUMS = ", ".join(f"sum({name}) AS {name}" for name in _SIGNED_NAMES)


def _tally_statements(votes: str, pair_rows: str, postgres: bool) -> list[str]:
    """The statements that apply the vote rows `votes` (from `_vote_rows`, UNION ALL-ed) and the
    signed pair rows `pair_rows` (w, project_id, rater_id, other_id, agree) to every table, the
    comparison tallies first. Rows whose parent is gone (a cascade) are skipped; on PostgreSQL
    rows are written in key order, so concurrent writers take their row locks in one order."""

    def order(n: int) -> str:
        return "ORDER BY " + ", ".join(str(i + 1) for i in range(n)) if postgres else ""

    parents = (
        "EXISTS (SELECT 1 FROM projects p WHERE p.id = d.project_id) "
        "AND EXISTS (SELECT 1 FROM users u WHERE u.id = d.rater_id)"
    )
    rater = "project_id, rater_id, source"
    flags_from, flag = _flag_elements("v", postgres)
    return [
        f"INSERT INTO comparison_tallies ({_COMPARISON_COLUMNS}, chars_a, chars_b) "
        f"SELECT d.*, length(ca.text), length(cb.text) FROM ("
        "SELECT comparison_id, source, min(project_id) AS project_id, sum(votes) AS votes, sum(a) AS a, "
        f"sum(b) AS b, sum(tie) AS tie, {_SIGNED_SUMS} FROM ({votes}) v GROUP BY comparison_id, source) AS d "
        "JOIN comparisons c ON c.id = d.comparison_id "
        "JOIN completions ca ON ca.id = c.completion_a_id JOIN completions cb ON cb.id = c.completion_b_id "
        f"WHERE true {order(2)} "
        + _add("comparison_tallies", "comparison_id, source", ["votes", "a", "b", "tie", *_SIGNED_NAMES]),
        f"INSERT INTO rater_tallies ({_RATER_COLUMNS}) SELECT d.* FROM ("
        f"SELECT {rater}, sum(votes) AS judgments, sum(tie) AS ties, sum(both_bad) AS both_bad, "
        "sum(a) + sum(b) AS non_tie, sum(left_picks) AS left_picks, sum(flagged) AS flagged, "
        f"{_SIGNED_SUMS} FROM ({votes}) v GROUP BY {rater}) AS d WHERE {parents} {order(3)} "
        + _add(
            "rater_tallies",
            rater,
            ["judgments", "ties", "both_bad", "non_tie", "left_picks", "flagged", *_SIGNED_NAMES],
        ),
        "INSERT INTO rater_hours (project_id, rater_id, source, hour, judgments) SELECT d.* FROM ("
        f"SELECT {rater}, {_hour('v', postgres)} AS hour, sum(votes) AS judgments FROM ({votes}) v "
        f"GROUP BY 1, 2, 3, 4) AS d WHERE {parents} {order(4)} "
        + _add("rater_hours", f"{rater}, hour", ["judgments"]),
        "INSERT INTO rater_flag_tallies (project_id, rater_id, source, flag, judgments) SELECT d.* FROM ("
        f"SELECT {rater}, flag, sum(votes) AS judgments FROM ("
        f"SELECT DISTINCT v.*, {flag} AS flag FROM ({votes}) v, {flags_from}) AS vf "
        f"GROUP BY 1, 2, 3, 4) AS d WHERE {parents} {order(4)} "
        + _add("rater_flag_tallies", f"{rater}, flag", ["judgments"]),
        "INSERT INTO rater_pair_tallies (project_id, rater_id, other_id, pairs, agreeing) SELECT d.* FROM ("
        "SELECT project_id, rater_id, other_id, sum(w) AS pairs, sum(w * agree) AS agreeing "
        f"FROM ({pair_rows}) p GROUP BY 1, 2, 3 HAVING sum(w) <> 0 OR sum(w * agree) <> 0) AS d "
        f"WHERE {parents} AND EXISTS (SELECT 1 FROM users o WHERE o.id = d.other_id) {order(3)} "
        + _add("rater_pair_tallies", "project_id, rater_id, other_id", ["pairs", "agreeing"]),
    ]


def _pairs_of(votes: str, w: str) -> str:
    """Signed pair rows of a set of human votes (id, comparison_id, project_id, rater_id, choice):
    each pair once, under the rater of the later vote."""
    return (
        f"SELECT {w} AS w, x.project_id, x.rater_id, y.rater_id AS other_id, "
        "CASE WHEN x.choice = y.choice THEN 1 ELSE 0 END AS agree "
        f"FROM ({votes}) x JOIN ({votes}) y ON y.comparison_id = x.comparison_id AND y.id < x.id"
    )


# --- PostgreSQL: one statement-level trigger per operation, with transition tables -------------

_PG_FUNCTION = """
CREATE FUNCTION {name}(added judgments[], removed judgments[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = {plans} AS $fn$
BEGIN
{statements}
END
$fn$
"""
# A statement that writes a few judgments (the rating routes: one) runs the tally statements
# with plans made once per connection: planning them anew for each judgment would cost several
# times what running them does. One that writes many (imports, AI judges) has them planned for
# its size, as generic plans that assume a few rows would be slow there.
_PG_FEW_ROWS = 64
_PG_FUNCTIONS = {
    "rlhf_tally_judgments": "force_generic_plan",
    "rlhf_tally_judgments_bulk": "force_custom_plan",
}


def _pg_functions() -> list[str]:
    votes = (
        _vote_rows("u", "1", True)
        + " FROM unnest(added) AS u UNION ALL "
        + _vote_rows("u", "-1", True)
        + " FROM unnest(removed) AS u"
    )
    # The human votes of the changed comparisons after the change (visible now) and before it
    # (those, less the added ones, plus the removed ones).
    after = (
        "SELECT j.id, j.comparison_id, j.project_id, j.rater_id, j.choice FROM judgments j "
        "WHERE j.source = 'human' AND j.comparison_id IN ("
        "SELECT comparison_id FROM unnest(added) UNION SELECT comparison_id FROM unnest(removed))"
    )
    before = (
        f"SELECT * FROM ({after}) a WHERE NOT EXISTS (SELECT 1 FROM unnest(added) n WHERE n.id = a.id) "
        "UNION ALL "
        "SELECT id, comparison_id, project_id, rater_id, choice FROM unnest(removed) WHERE source = 'human'"
    )
    pair_rows = f"{_pairs_of(after, '1')} UNION ALL {_pairs_of(before, '-1')}"
    statements = _tally_statements(votes, pair_rows, postgres=True)
    body = "\n".join(f"  {s};" for s in statements)
    return [
        _PG_FUNCTION.format(name=name, plans=plans, statements=body) for name, plans in _PG_FUNCTIONS.items()
    ]


_PG_TRIGGERS = {
    "INSERT": ("NEW TABLE AS changed", "ARRAY(SELECT c::judgments FROM changed c)", "'{}'"),
    "DELETE": ("OLD TABLE AS changed", "'{}'", "ARRAY(SELECT c::judgments FROM changed c)"),
    "UPDATE": (
        "NEW TABLE AS changed OLD TABLE AS previous",
        "ARRAY(SELECT c::judgments FROM changed c)",
        "ARRAY(SELECT p::judgments FROM previous p)",
    ),
}


def _pg_create() -> None:
    for function in _pg_functions():
        op.execute(function)
    for operation, (referencing, added, removed) in _PG_TRIGGERS.items():
        name = f"judgments_tally_{operation.lower()}"
        op.execute(
            f"CREATE FUNCTION rlhf_{name}() RETURNS trigger LANGUAGE plpgsql AS $fn$ "
            f"DECLARE added judgments[] := {added}; removed judgments[] := {removed}; BEGIN "
            # A deleted project takes its tallies with it: its judgments need no tallying.
            "IF NOT EXISTS (SELECT 1 FROM projects p WHERE p.id IN (SELECT project_id FROM unnest(added) "
            "UNION SELECT project_id FROM unnest(removed))) THEN RETURN NULL; END IF; "
            f"IF cardinality(added) + cardinality(removed) <= {_PG_FEW_ROWS} THEN "
            "PERFORM rlhf_tally_judgments(added, removed); "
            "ELSE PERFORM rlhf_tally_judgments_bulk(added, removed); END IF; "
            "RETURN NULL; END $fn$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {operation} ON judgments REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION rlhf_{name}()"
        )
    # TRUNCATE judgments empties the tallies (TRUNCATE fires no row or transition triggers).
    op.execute(
        "CREATE FUNCTION rlhf_judgments_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        + " ".join(f"DELETE FROM {table};" for table in TABLES)
        + " RETURN NULL; END $fn$"
    )
    op.execute(
        "CREATE TRIGGER judgments_tally_truncate AFTER TRUNCATE ON judgments "
        "FOR EACH STATEMENT EXECUTE FUNCTION rlhf_judgments_tally_truncate()"
    )


def _pg_drop() -> None:
    op.execute("DROP TRIGGER IF EXISTS judgments_tally_truncate ON judgments")
    op.execute("DROP FUNCTION IF EXISTS rlhf_judgments_tally_truncate()")
    for operation in _PG_TRIGGERS:
        name = f"judgments_tally_{operation.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON judgments")
        op.execute(f"DROP FUNCTION IF EXISTS rlhf_{name}()")
    for function in _PG_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}(judgments[], judgments[])")


# --- SQLite: row-level triggers (SQLite runs them as each row is written) ------------------------


def _sqlite_row(r: str, w: str) -> tuple[str, str]:
    """The vote rows and pair rows of one row (NEW or OLD) with sign w: its pairs with the other
    human votes on its comparison as they stand (rows are written one at a time)."""
    votes = _vote_rows(r, w, False)
    later = f"CASE WHEN {r}.id > e.id THEN {r}.rater_id ELSE e.rater_id END"
    earlier = f"CASE WHEN {r}.id > e.id THEN e.rater_id ELSE {r}.rater_id END"
    pairs = (
        f"SELECT {w} AS w, {r}.project_id AS project_id, {later} AS rater_id, {earlier} AS other_id, "
        f"CASE WHEN e.choice = {r}.choice THEN 1 ELSE 0 END AS agree FROM judgments e "
        f"WHERE e.comparison_id = {r}.comparison_id AND e.source = 'human' AND e.id <> {r}.id "
        f"AND {r}.source = 'human'"
    )
    return votes, pairs


def _sqlite_create() -> None:
    for operation, rows in (
        ("INSERT", [("NEW", "1")]),
        ("DELETE", [("OLD", "-1")]),
        ("UPDATE", [("OLD", "-1"), ("NEW", "1")]),
    ):
        body = []
        for r, w in rows:
            votes, pairs = _sqlite_row(r, w)
            body += _tally_statements(votes, pairs, postgres=False)
        statements = "\n".join(f"  {s};" for s in body)
        # A deleted project takes its tallies with it: its judgments need no tallying.
        when = (
            "WHEN EXISTS (SELECT 1 FROM projects WHERE id = OLD.project_id) " if operation == "DELETE" else ""
        )
        op.execute(
            f"CREATE TRIGGER judgments_tally_{operation.lower()} AFTER {operation} ON judgments "
            f"FOR EACH ROW {when}BEGIN\n{statements}\nEND"
        )


def _sqlite_drop() -> None:
    for operation in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS judgments_tally_{operation}")


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_create()
    else:
        _sqlite_create()


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_drop()
    else:
        _sqlite_drop()


# --- filling the tallies from the judgments already stored -----------------------------------


def _backfill() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    votes = _vote_rows("j", "1", postgres) + " FROM judgments j"
    human = "SELECT id, comparison_id, project_id, rater_id, choice FROM judgments WHERE source = 'human'"
    for statement in _tally_statements(votes, _pairs_of(human, "1"), postgres):
        op.execute(statement)


def upgrade() -> None:
    _create_tables()
    op.create_index(
        "ix_judgments_project_rater_time", "judgments", ["project_id", "rater_id", "time_spent_ms"]
    )
    edits = sa.text("source = 'edit'")
    op.create_index(
        "ix_judgments_edits", "judgments", ["comparison_id"], postgresql_where=edits, sqlite_where=edits
    )
    triaged = sa.text("triage <> 'untriaged'")
    op.create_index(
        "ix_comparisons_triaged",
        "comparisons",
        ["project_id", "triage"],
        postgresql_where=triaged,
        sqlite_where=triaged,
    )
    _backfill()
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    op.drop_index("ix_comparisons_triaged", table_name="comparisons")
    op.drop_index("ix_judgments_edits", table_name="judgments")
    op.drop_index("ix_judgments_project_rater_time", table_name="judgments")
    for table in reversed(TABLES):
        op.drop_table(table)
