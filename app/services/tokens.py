"""API tokens: created and revoked by their owner, stored as a hash, shown once.

A token is ``rlhf_`` followed by 43 characters of ``secrets.token_urlsafe`` (256 bits), so a
plain SHA-256 of it is enough to store (no password hashing needed: it cannot be guessed).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiToken, ApiTokenProject, Project, User
from app.models.types import utcnow

TOKEN_PREFIX = "rlhf_"
DEFAULT_SCOPES = ["export:read"]
# last_used_at is written at most this often per token: no write on every API request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKENS_PER_USER = 50


class TokenError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session, *, user: User, name: str, projects: list[Project] | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the secret (never stored, shown once).

    With ``projects`` (not empty), the token reads those projects only, and only while its owner
    may read them too.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise TokenError("Give the token a name of 1 to 100 characters.")
    active = [t for t in list_tokens(session, user=user) if t.revoked_at is None]
    if len(active) >= MAX_TOKENS_PER_USER:
        raise TokenError(f"You have {len(active)} active tokens; revoke one first.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:12],
        scopes=list(DEFAULT_SCOPES),
        project_scoped=bool(projects),
    )
    session.add(token)
    session.flush()
    session.add_all(
        ApiTokenProject(token_id=token.id, project_id=p.id)
        for p in {p.id: p for p in projects or []}.values()
    )
    session.flush()
    return token, secret


def list_tokens(session: Session, *, user: User) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    return list(session.scalars(query))


def revoke_token(session: Session, *, user: User, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise TokenError("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token


def scopes(session: Session, secret: str) -> list[str]:
    """What the token with this secret may do (empty for an unknown token)."""
    found = session.scalar(select(ApiToken.scopes).where(ApiToken.token_hash == hash_token(secret)))
    return list(found or [])


def project_scope(session: Session, secret: str) -> frozenset[int] | None:
    """The ids of the projects a project-scoped token may read; None for a token without a
    project scope (an empty set: a scoped token whose projects are all gone reads nothing)."""
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).one_or_none()
    if token is None or not token.project_scoped:
        return None
    ids = session.scalars(select(ApiTokenProject.project_id).where(ApiTokenProject.token_id == token.id))
    return frozenset(ids)


def project_slugs(session: Session, token_ids: list[int]) -> dict[int, list[str]]:
    """The slugs each scoped token of `token_ids` may read (for the tokens page)."""
    found: dict[int, list[str]] = {}
    rows = session.execute(
        select(ApiTokenProject.token_id, Project.slug)
        .join(Project, Project.id == ApiTokenProject.project_id)
        .where(ApiTokenProject.token_id.in_(token_ids))
        .order_by(Project.slug)
    )
    for token_id, slug in rows:
        found.setdefault(token_id, []).append(slug)
    return found


def authenticate(session: Session, secret: str) -> User | None:
    """The active user owning this unrevoked token, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.flush()
    return user
