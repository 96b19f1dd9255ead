"""Finding, listing, creating and editing projects."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Project
from app.schemas.project import ProjectCreate, ProjectUpdate


class ProjectExists(Exception):
    pass


def get_project(session: Session, slug: str) -> Project | None:
    return session.scalars(select(Project).where(Project.slug == slug)).one_or_none()


def get_active_project(session: Session, slug: str) -> Project | None:
    """The project named by `slug` while it takes judgments (raters see no other)."""
    return session.scalars(
        select(Project).where(Project.slug == slug, Project.is_active.is_(True))
    ).one_or_none()


def list_projects(session: Session, *, active_only: bool = False) -> list[Project]:
    """Projects by name, or only those that take judgments."""
    query = select(Project).order_by(Project.name)
    if active_only:
        query = query.where(Project.is_active.is_(True))
    return list(session.scalars(query))


def create_project(session: Session, *, project_in: ProjectCreate) -> Project:
    if get_project(session, project_in.slug) is not None:
        raise ProjectExists(f"A project named {project_in.slug!r} exists already.")
    project = Project(**project_in.model_dump())
    session.add(project)
    session.flush()
    return project


def update_project(session: Session, *, project: Project, project_in: ProjectUpdate) -> Project:
    for field, value in project_in.model_dump().items():
        setattr(project, field, value)
    session.flush()
    return project
