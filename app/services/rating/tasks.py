"""Which task a rater gets next in a project, whatever its kind (the table: app/task_kinds.py).

* The kinds a rater may get are the project's `task_mix` kinds with a weight above 0, narrowed
  by their membership: a member row's `task_kinds` (None: every kind of the mix); a rater who is
  a member several times (in person, through groups) gets the union; a rater of an open project
  who is no member, and an admin, get every kind of the mix.
* A lease the rater holds, of any of those kinds, comes first: a reload never swaps the task.
* Otherwise one kind is drawn by weight among them; when it has nothing for the rater the draw
  goes on among the others (by weight), so a rater idles only when no kind has work.
* Membership and pausing are checked by each kind's claim and by the routes, as for pairs.
* One read per request: the routes read the rater's member rows with the project
  (`membership.rating_seat`) and pass the mix down (`next_task(mix=...)`); a mix of one kind
  goes straight to that kind's claim, which returns the lease the rater holds before claiming
  anything, so the lease is read once too.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import Project, ProjectMember, RaterGroupMember
from app.models.types import utcnow
from app.services.membership import allowed_kinds
from app.services.rating.common import require_rater
from app.task_kinds import DEFAULT_MIX, TASK_KINDS, TaskKind, TaskSpec


@dataclass(frozen=True)
class Task:
    """A rater's task: its kind's table entry and the lease (an assignment of that kind)."""

    spec: TaskSpec
    lease: Any

    @property
    def kind(self) -> TaskKind:
        return self.spec.kind


def member_kinds(session: Session, project: Project, rater_id: int) -> frozenset[str] | None:
    """The task kinds the rater's membership rows allow; None: no limit (not a member, or a row
    without a list)."""
    groups = select(RaterGroupMember.group_id).where(RaterGroupMember.user_id == rater_id)
    rows = session.scalars(
        select(ProjectMember.task_kinds).where(
            ProjectMember.project_id == project.id,
            or_(ProjectMember.user_id == rater_id, ProjectMember.group_id.in_(groups)),
        )
    ).all()
    return allowed_kinds(rows)


def mix_for(project: Project, allowed: Collection[str] | None) -> dict[TaskKind, float]:
    """The project's kinds with a weight above 0, narrowed to `allowed` (None: all), with their
    weights (table order)."""
    mix = project.task_mix or DEFAULT_MIX
    return {
        kind: float(mix[kind.value])
        for kind in TASK_KINDS
        if float(mix.get(kind.value, 0) or 0) > 0 and (allowed is None or kind.value in allowed)
    }


def rater_mix(session: Session, project: Project, rater_id: int) -> dict[TaskKind, float]:
    """The kinds this rater may be given here, with their weights (table order)."""
    return mix_for(project, member_kinds(session, project, rater_id))


def _draw_order(mix: dict[TaskKind, float], rng: random.Random | None) -> list[TaskKind]:
    """The kinds in a weighted random order (a draw without replacement)."""
    draw = rng or random
    left = dict(mix)
    order: list[TaskKind] = []
    while left:
        kinds, weights = list(left), list(left.values())
        kind = draw.choices(kinds, weights=weights)[0]
        order.append(kind)
        del left[kind]
    return order


def current_task(
    session: Session,
    project: Project,
    rater_id: int,
    now: datetime | None = None,
    *,
    mix: dict[TaskKind, float] | None = None,
) -> Task | None:
    """The unexpired lease the rater holds here, of any kind they may be given (`mix`: the
    rater's, when the caller has it)."""
    now = now or utcnow()
    for kind in rater_mix(session, project, rater_id) if mix is None else mix:
        lease = TASK_KINDS[kind].current(session, project=project, rater_id=rater_id, now=now)
        if lease is not None:
            return Task(TASK_KINDS[kind], lease)
    return None


def next_task(
    session: Session,
    project: Project,
    rater_id: int,
    *,
    mix: dict[TaskKind, float] | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Task | None:
    """The rater's current task, or a newly claimed one drawn by the mix; None when no kind has
    anything for them. `mix` is the rater's (`rater_mix`, or `mix_for` of what the route read
    with the project); without it, it is read here."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    if mix is None:
        mix = rater_mix(session, project, rater_id)
    if len(mix) > 1:  # a lease of any kind comes before a draw
        held = current_task(session, project, rater_id, now, mix=mix)
        if held is not None:
            return held
    # One kind: its claim returns the lease the rater holds before claiming anything.
    for kind in _draw_order(mix, rng):
        spec = TASK_KINDS[kind]
        lease = spec.claim(session, project=project, rater_id=rater_id, now=now)
        if lease is not None:
            return Task(spec, lease)
    return None


def has_work(session: Session, project: Project, rater_id: int, now: datetime | None = None) -> bool:
    """Whether any kind the rater may be given has something for them (the project list)."""
    now = now or utcnow()
    return any(
        TASK_KINDS[kind].has_work(session, project=project, rater_id=rater_id, now=now)
        for kind in rater_mix(session, project, rater_id)
    )
