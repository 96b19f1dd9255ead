"""Who may rate in, and who may read, which project; members, rater groups and their changes.

The rules, checked here and nowhere else:

* Rating: an admin may rate in every project; a rater in every open project and in a
  members-only project when they are its member, directly or through a rater group. Nobody else
  rates (researchers and AI judges do not).
* Reading (exports, the API, the project list): an admin reads every project; a researcher
  every project unless their ``all_projects`` is off, then only the projects they are a member
  of (directly or through a group), whatever the projects' visibility. A project-scoped API token
  narrows that further to its listed projects, never widens it. Raters read nothing.
* Removing someone from a project (a member, a group, a group's member, or turning a project
  members-only) releases the active leases of every rater who can no longer rate there: those
  assignments become ``lapsed`` and their slots return to the pool. Judgments stay.

The routes answer a project a user may not use exactly as a project that does not exist (404), so
that membership reveals nothing about the projects one is not in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, and_, bindparam, delete, exists, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.models import (
    Assignment,
    AssignmentStatus,
    Project,
    ProjectMember,
    RankingAssignment,
    RaterGroup,
    RaterGroupMember,
    Role,
    User,
    Visibility,
    WritingAssignment,
)

GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Roles that can be a project's member: raters rate, researchers read (when limited).
MEMBER_ROLES = (Role.rater, Role.researcher)


class MembershipError(ValueError):
    """A member or group that cannot be added or removed; `str()` names which and why."""


# --- the checks ------------------------------------------------------------------------------


_Column = ColumnElement[int] | InstrumentedAttribute[int]


def _member_of(project_id: _Column, user_id: _Column | int) -> Exists:
    """True when the user is a member of the project, directly or through a rater group."""
    groups = select(RaterGroupMember.group_id).where(RaterGroupMember.user_id == user_id)
    return exists().where(
        ProjectMember.project_id == project_id,
        or_(ProjectMember.user_id == user_id, ProjectMember.group_id.in_(groups)),
    )


def is_member(session: Session, project: Project, user_id: int) -> bool:
    found = session.execute(select(_member_of(Project.id, user_id)).where(Project.id == project.id))
    return bool(found.scalar())


def can_rate(session: Session, user: User, project: Project) -> bool:
    """Whether `user` may see, claim, submit, skip and undo in `project` (its activity aside)."""
    if user.role == Role.admin:
        return True
    if user.role != Role.rater:
        return False
    return project.visibility == Visibility.open or is_member(session, project, user.id)


def may_rate(session: Session, project: Project, rater_id: int) -> bool:
    """`can_rate` by the rater's id: the rating service's own check on every claim and write."""
    if project.visibility == Visibility.open:
        return True  # no query: open projects are the common case on the rating path
    user = session.get(User, rater_id)
    return user is not None and can_rate(session, user, project)


def allowed_kinds(rows: Iterable[list[str] | None]) -> frozenset[str] | None:
    """The task kinds a user's member rows of one project allow: the union of their lists; None
    (no limit) when there is no row or a row without a list."""
    rows = list(rows)
    if not rows or any(kinds is None for kinds in rows):
        return None
    return frozenset(kind for kinds in rows for kind in (kinds or []))


@dataclass(frozen=True)
class RatingSeat:
    """An active project as one user may rate in it, with the task kinds their member rows allow
    (`allowed_kinds`; app/services/rating/tasks.py narrows the project's mix with them)."""

    project: Project
    user_id: int
    task_kinds: frozenset[str] | None


_groups_of_user = select(RaterGroupMember.group_id).where(RaterGroupMember.user_id == bindparam("user_id"))
# The project and the user's member rows in it (direct or through groups): one row per member row,
# or one row with no member when the user is none.
_SEAT = (
    select(Project, ProjectMember.id, ProjectMember.task_kinds)
    .outerjoin(
        ProjectMember,
        and_(
            ProjectMember.project_id == Project.id,
            or_(ProjectMember.user_id == bindparam("user_id"), ProjectMember.group_id.in_(_groups_of_user)),
        ),
    )
    .where(Project.slug == bindparam("slug"), Project.is_active.is_(True))
)


def rating_seat(session: Session, user: User, slug: str) -> RatingSeat | None:
    """The active project named `slug` when `user` may rate in it (the rules of `can_rate`), with
    their task kinds, in one statement; None when it is missing, inactive or not theirs."""
    rows = session.execute(_SEAT, {"slug": slug, "user_id": user.id}).all()
    return seat_from_rows(user, [(project, member, kinds) for project, member, kinds in rows])


def seat_from_rows(
    user: User, rows: list[tuple[Project | None, int | None, list[str] | None]]
) -> RatingSeat | None:
    """The seat from (project, member row id, task kinds) rows as `_SEAT` returns them (a
    statement that reads more alongside may return them too); None when `user` may not rate
    there or there is no project."""
    if not rows or rows[0][0] is None:
        return None
    project = rows[0][0]
    member_rows = [kinds for _, member_id, kinds in rows if member_id is not None]
    if user.role != Role.admin and (
        user.role != Role.rater or (project.visibility != Visibility.open and not member_rows)
    ):
        return None
    return RatingSeat(project, user.id, allowed_kinds(member_rows))


def rateable_projects(session: Session, user: User) -> list[Project]:
    """The active projects `user` may rate in, by name."""
    query = select(Project).where(Project.is_active.is_(True)).order_by(Project.name)
    if user.role != Role.admin:
        if user.role != Role.rater:
            return []
        query = query.where(or_(Project.visibility == Visibility.open, _member_of(Project.id, user.id)))
    return list(session.scalars(query))


def can_export(
    session: Session, user: User, project: Project, *, token_projects: frozenset[int] | None = None
) -> bool:
    """Whether `user` (through a token limited to `token_projects`, if given) may read `project`."""
    if token_projects is not None and project.id not in token_projects:
        return False
    if user.role == Role.admin:
        return True
    if user.role != Role.researcher:
        return False
    return user.all_projects or is_member(session, project, user.id)


def exportable_projects(
    session: Session, user: User, *, token_projects: frozenset[int] | None = None
) -> list[Project]:
    """The projects `user` may read (all, active or not), by name."""
    query = select(Project).order_by(Project.name)
    if token_projects is not None:
        query = query.where(Project.id.in_(sorted(token_projects)))
    if user.role == Role.researcher and not user.all_projects:
        query = query.where(_member_of(Project.id, user.id))
    elif user.role not in (Role.admin, Role.researcher):
        return []
    return list(session.scalars(query))


def visible_projects(session: Session, user: User) -> list[Project]:
    """The projects a user's pages list: where a rater rates, what staff read."""
    if user.role == Role.rater:
        return rateable_projects(session, user)
    return exportable_projects(session, user)


# --- releasing leases -------------------------------------------------------------------------


def release_outsiders(session: Session, project_ids: Iterable[int] | None = None) -> int:
    """Lapse the active leases held in members-only projects by raters who may no longer rate
    there (all such projects, or those given). Returns how many were released."""
    admins = select(User.id).where(User.role == Role.admin)
    members_only = select(Project.id).where(Project.visibility == Visibility.members)
    if project_ids is not None:
        members_only = members_only.where(Project.id.in_(list(project_ids)))
    released = 0
    for table in (Assignment, RankingAssignment, WritingAssignment):
        result = session.execute(
            update(table)
            .where(
                table.status == AssignmentStatus.active,
                table.project_id.in_(members_only),
                table.rater_id.not_in(admins),
                ~_member_of(table.project_id, table.rater_id),
            )
            .values(status=AssignmentStatus.lapsed)
            .execution_options(synchronize_session=False)
        )
        released += int(result.rowcount or 0)  # type: ignore[attr-defined]
    session.expire_all()  # loaded assignments may have changed underneath
    return released


# --- members of a project ----------------------------------------------------------------------


@dataclass(frozen=True)
class MemberRow:
    id: int
    kind: str  # "user" or "group"
    name: str
    role: str  # the user's role, or "group"
    added_by: str | None
    added_at: datetime
    task_kinds: list[str] | None = None  # None: every kind of the project's mix


def _users_named(session: Session, names: Iterable[str], roles: tuple[Role, ...]) -> list[User]:
    wanted = sorted({n.strip().lower() for n in names if n.strip()})
    found = {u.username: u for u in session.scalars(select(User).where(User.username.in_(wanted)))}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise MembershipError(f"No user named {', '.join(missing)}.")
    wrong = [u.username for u in found.values() if u.role not in roles]
    if wrong:
        allowed = " or ".join(r.value for r in roles)
        raise MembershipError(f"Only a {allowed} can be added here: {', '.join(sorted(wrong))}.")
    return [found[n] for n in wanted]


def _groups_named(session: Session, names: Iterable[str]) -> list[RaterGroup]:
    wanted = sorted({n.strip().lower() for n in names if n.strip()})
    found = {g.name: g for g in session.scalars(select(RaterGroup).where(RaterGroup.name.in_(wanted)))}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise MembershipError(f"No rater group named {', '.join(missing)}.")
    return [found[n] for n in wanted]


def split_names(text: str) -> list[str]:
    """Names typed in one field, separated by commas, spaces or lines."""
    return [name for name in re.split(r"[\s,]+", text) if name]


def list_members(session: Session, project: Project) -> list[MemberRow]:
    rows = session.execute(
        select(ProjectMember, User, RaterGroup)
        .outerjoin(User, User.id == ProjectMember.user_id)
        .outerjoin(RaterGroup, RaterGroup.id == ProjectMember.group_id)
        .where(ProjectMember.project_id == project.id)
        .order_by(ProjectMember.group_id.is_(None), RaterGroup.name, User.username)
    ).all()
    adders = {
        u.id: u.username
        for u in session.scalars(select(User).where(User.id.in_({m.added_by_id for m, _, _ in rows})))
    }
    return [
        MemberRow(
            id=member.id,
            kind="user" if user is not None else "group",
            name=user.username if user is not None else group.name,
            role=user.role.value if user is not None else "group",
            added_by=adders.get(member.added_by_id) if member.added_by_id else None,
            added_at=member.added_at,
            task_kinds=member.task_kinds,
        )
        for member, user, group in rows
    ]


def add_members(
    session: Session,
    project: Project,
    *,
    usernames: Iterable[str] = (),
    groups: Iterable[str] = (),
    added_by: User | None = None,
    task_kinds: Iterable[str] | None = None,
) -> int:
    """Add raters/researchers and rater groups (all or none: an unknown name adds nobody).
    `task_kinds` limits them (the new members and those named again) to those kinds of the
    project's mix; None gives them every kind. Returns how many were new."""
    from app.task_kinds import InvalidMix, check_kinds  # the table imports the rating services

    kinds = None
    if task_kinds is not None:
        try:
            kinds = check_kinds(list(task_kinds)) or None
        except InvalidMix as error:
            raise MembershipError(str(error)) from None
    users = _users_named(session, usernames, MEMBER_ROLES)
    found_groups = _groups_named(session, groups)
    existing = session.execute(
        select(ProjectMember.user_id, ProjectMember.group_id).where(ProjectMember.project_id == project.id)
    ).all()
    have_users = {u for u, _ in existing if u is not None}
    have_groups = {g for _, g in existing if g is not None}
    added_by_id = added_by.id if added_by is not None else None
    new = [
        ProjectMember(project_id=project.id, user_id=u.id, added_by_id=added_by_id, task_kinds=kinds)
        for u in users
        if u.id not in have_users
    ] + [
        ProjectMember(project_id=project.id, group_id=g.id, added_by_id=added_by_id, task_kinds=kinds)
        for g in found_groups
        if g.id not in have_groups
    ]
    again = [ProjectMember.user_id.in_([u.id for u in users if u.id in have_users]),
             ProjectMember.group_id.in_([g.id for g in found_groups if g.id in have_groups])]  # fmt: skip
    session.execute(
        update(ProjectMember)
        .where(ProjectMember.project_id == project.id, or_(*again))
        .values(task_kinds=kinds)
        .execution_options(synchronize_session=False)
    )
    session.add_all(new)
    session.flush()
    return len(new)


def remove_members(
    session: Session, project: Project, *, usernames: Iterable[str] = (), groups: Iterable[str] = ()
) -> int:
    """Remove members by name; their leases here are released (judgments stay). Returns how many
    memberships ended."""
    user_ids = [u.id for u in _users_named(session, usernames, tuple(Role))]
    group_ids = [g.id for g in _groups_named(session, groups)]
    removed = 0
    if user_ids:
        removed += _delete_members(session, project, ProjectMember.user_id.in_(user_ids))
    if group_ids:
        removed += _delete_members(session, project, ProjectMember.group_id.in_(group_ids))
    release_outsiders(session, [project.id])
    return removed


def remove_member(session: Session, project: Project, member_id: int) -> bool:
    """Remove one member row (the project page's button); False when it is not this project's."""
    removed = _delete_members(session, project, ProjectMember.id == member_id)
    release_outsiders(session, [project.id])
    return removed > 0


def _delete_members(session: Session, project: Project, which: ColumnElement[bool]) -> int:
    result = session.execute(
        delete(ProjectMember)
        .where(ProjectMember.project_id == project.id, which)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def set_visibility(session: Session, project: Project, visibility: Visibility) -> int:
    """Open the project to every rater or restrict it to its members; returns leases released."""
    project.visibility = Visibility(visibility)
    session.flush()
    return release_outsiders(session, [project.id])


def set_all_projects(session: Session, user: User, all_projects: bool) -> None:
    """Let a researcher read every project, or only those they are a member of."""
    if user.role != Role.researcher:
        raise MembershipError("Only researchers can be limited to their projects.")
    user.all_projects = all_projects
    session.flush()


# --- rater groups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    id: int
    name: str
    members: list[str]
    projects: list[str]


def get_group(session: Session, group_id: int) -> RaterGroup | None:
    return session.get(RaterGroup, group_id)


def group_named(session: Session, name: str) -> RaterGroup | None:
    return session.scalars(select(RaterGroup).where(RaterGroup.name == name.strip().lower())).one_or_none()


def list_groups(session: Session) -> list[GroupRow]:
    groups = list(session.scalars(select(RaterGroup).order_by(RaterGroup.name)))
    members: dict[int, list[str]] = {g.id: [] for g in groups}
    for group_id, username in session.execute(
        select(RaterGroupMember.group_id, User.username)
        .join(User, User.id == RaterGroupMember.user_id)
        .order_by(User.username)
    ):
        members[group_id].append(username)
    projects: dict[int, list[str]] = {g.id: [] for g in groups}
    for group_of, slug in session.execute(
        select(ProjectMember.group_id, Project.slug)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(ProjectMember.group_id.is_not(None))
        .order_by(Project.slug)
    ):
        if group_of is not None:
            projects[group_of].append(slug)
    return [GroupRow(g.id, g.name, members[g.id], projects[g.id]) for g in groups]


def create_group(session: Session, name: str) -> RaterGroup:
    name = name.strip().lower()
    if not GROUP_NAME.match(name):
        raise MembershipError(
            "A group name is 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a "
            "letter or digit."
        )
    if group_named(session, name) is not None:
        raise MembershipError(f"A group named {name!r} exists already.")
    group = RaterGroup(name=name)
    session.add(group)
    session.flush()
    return group


def delete_group(session: Session, group: RaterGroup) -> None:
    """Delete a group: its projects lose it as a member, and leases it alone granted are released."""
    project_ids = list(
        session.scalars(select(ProjectMember.project_id).where(ProjectMember.group_id == group.id))
    )
    session.execute(delete(ProjectMember).where(ProjectMember.group_id == group.id))
    session.execute(delete(RaterGroupMember).where(RaterGroupMember.group_id == group.id))
    session.delete(group)
    session.flush()
    release_outsiders(session, project_ids)


def add_to_group(session: Session, group: RaterGroup, usernames: Iterable[str]) -> int:
    """Add raters to a group (all or none). Returns how many were new."""
    users = _users_named(session, usernames, (Role.rater, Role.researcher))
    have = set(session.scalars(select(RaterGroupMember.user_id).where(RaterGroupMember.group_id == group.id)))
    new = [RaterGroupMember(group_id=group.id, user_id=u.id) for u in users if u.id not in have]
    session.add_all(new)
    session.flush()
    return len(new)


def remove_from_group(session: Session, group: RaterGroup, usernames: Iterable[str]) -> int:
    """Take users out of a group; leases in the group's projects they can no longer rate in are
    released. Returns how many left."""
    user_ids = [u.id for u in _users_named(session, usernames, tuple(Role))]
    if not user_ids:
        return 0
    result = session.execute(
        delete(RaterGroupMember).where(
            RaterGroupMember.group_id == group.id, RaterGroupMember.user_id.in_(user_ids)
        )
    )
    project_ids = list(
        session.scalars(select(ProjectMember.project_id).where(ProjectMember.group_id == group.id))
    )
    release_outsiders(session, project_ids)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
