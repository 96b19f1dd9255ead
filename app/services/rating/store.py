"""A judgment on the rater's unexpired lease, stored on PostgreSQL in one statement.

`STORE_ON_LEASE` closes the lease, inserts the judgment and raises the pair's count in one round
trip (data-modifying CTEs), with what `submit_judgment` decided in three statements before and
still decides on SQLite:

* Only the rater's own lease in this project, active and unexpired, is closed; when none is,
  nothing is written and no row comes back (the caller takes the careful path: a repeat, a late
  or foreign assignment).
* The UPDATE's row lock orders concurrent submits of the same assignment: the second finds it done
  and writes nothing. The judgment is unique per (comparison, rater); a concurrent duplicate that
  won the race leaves the row's judgment columns NULL, and the count is not raised.
* The count is raised by an UPDATE of the comparison row, which waits for a concurrent one on the
  same pair and returns the current count, extra raters and kind (for adaptive overlap).
* The choice is read through the lease's stored left/right order and the time spent is counted
  from its ``leased_at``, both in the statement, as `pick_to_choice` and the Python path do.
* ``other_leases``: the rater's other active leases in the project (expired ones included); when
  there are none, the next claim need not read them (`assignment.claim_next`).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Integer,
    Table,
    bindparam,
    case,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from app.models import Assignment, AssignmentStatus, Comparison, Judgment, JudgmentSource
from app.models.types import UTCDateTime

MAX_TIME_SPENT_MS = 60 * 60 * 1000

_judgments = cast(Table, Judgment.__table__)

# The rater's own lease, active and unexpired, closed as done, returning what the judgment needs
# (parameters: lease, rater, project, now). The row lock it takes orders concurrent submits of the
# same assignment: the second one finds it done. SQLite runs it alone (`submit_judgment`).
CLOSE_LEASE = (
    update(Assignment)
    .where(
        Assignment.id == bindparam("lease"),
        Assignment.rater_id == bindparam("rater"),
        Assignment.project_id == bindparam("project"),
        Assignment.status == AssignmentStatus.active,
        Assignment.lease_expires_at > bindparam("now", type_=UTCDateTime),
    )
    .values(status=AssignmentStatus.done)
    .returning(Assignment.comparison_id, Assignment.a_on_left, Assignment.leased_at)
)
_closed = CLOSE_LEASE.cte("closed")
_elapsed_ms = func.floor(
    func.extract("epoch", bindparam("now", type_=UTCDateTime) - _closed.c.leased_at) * 1000
)
_stored = (
    insert(_judgments)
    .from_select(
        [
            "comparison_id",
            "rater_id",
            "project_id",
            "assignment_id",
            "choice",
            "strength",
            "both_bad",
            "flags",
            "rationale",
            "time_spent_ms",
            "a_on_left",
            "source",
            "created_at",
        ],  # fmt: skip
        select(
            _closed.c.comparison_id,
            bindparam("rater", type_=Integer),
            bindparam("project", type_=Integer),
            bindparam("lease", type_=Integer),
            case(
                (_closed.c.a_on_left, bindparam("choice_a_left", type_=_judgments.c.choice.type)),
                else_=bindparam("choice_b_left", type_=_judgments.c.choice.type),
            ),
            bindparam("picked_strength", type_=Integer),
            bindparam("picked_both_bad", type_=Boolean),
            bindparam("picked_flags", type_=_judgments.c.flags.type),
            bindparam("picked_rationale", type_=_judgments.c.rationale.type),
            func.least(func.greatest(_elapsed_ms, 0), MAX_TIME_SPENT_MS).cast(Integer),
            _closed.c.a_on_left,
            literal(JudgmentSource.human.value, _judgments.c.source.type),
            bindparam("now", type_=UTCDateTime),
        ),
    )
    .on_conflict_do_nothing(index_elements=["comparison_id", "rater_id"])
    .returning(*_judgments.c)
    .cte("stored")
)
_counted = (
    update(Comparison)
    .where(Comparison.id == _stored.c.comparison_id)
    .values(judgment_count=Comparison.judgment_count + 1)
    .returning(Comparison.judgment_count, Comparison.extra_raters, Comparison.kind)
    .cte("counted")
)
_other = cast(Table, Assignment.__table__).alias("other")
_OTHER_LEASES = (
    select(func.count())
    .where(
        _other.c.rater_id == bindparam("rater"),
        _other.c.project_id == bindparam("project"),
        _other.c.status == AssignmentStatus.active,
        _other.c.id != bindparam("lease"),
    )
    .scalar_subquery()
)
STORE_ON_LEASE = (
    select(
        _closed.c.comparison_id.label("closed_comparison_id"),
        _closed.c.a_on_left.label("closed_a_on_left"),
        _closed.c.leased_at.label("closed_leased_at"),
        *_stored.c,
        _counted.c.judgment_count,
        _counted.c.extra_raters,
        _counted.c.kind,
        _OTHER_LEASES.label("other_leases"),
    )
    .select_from(_closed)
    .outerjoin(_stored, true())
    .outerjoin(_counted, true())
)


def judgment_values(row: Any) -> dict[str, Any] | None:
    """The stored judgment's columns from a `STORE_ON_LEASE` row; None when a duplicate won."""
    if row.id is None:
        return None
    return {column.name: getattr(row, column.name) for column in _judgments.c}
