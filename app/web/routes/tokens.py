"""API tokens: a researcher's or an admin's own, created (shown once) and revoked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.models import User
from app.services import audit, membership, tokens
from app.web.deps import SessionDep, StaffUser, verify_csrf
from app.web.forms import TokenForm
from app.web.input_guard import IdPath
from app.web.templating import render

router = APIRouter(prefix="/account/tokens", tags=["tokens"], dependencies=[Depends(verify_csrf)])


def _tokens_page(
    request: Request, session: Session, user: User, *, secret: str | None = None, error: str | None = None,
    status_code: int = 200,
) -> Response:  # fmt: skip
    listed = tokens.list_tokens(session, user=user)
    response = render(
        request,
        "account/tokens.html",
        {
            "tokens": listed,
            "token_projects": tokens.project_slugs(session, [t.id for t in listed]),
            "projects": membership.exportable_projects(session, user),
            "secret": secret,
            "error": error,
        },
        status_code=status_code,
    )
    if secret is not None:  # the new token is shown once: never stored by a browser or proxy
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("", include_in_schema=False)
def list_tokens(request: Request, session: SessionDep, user: StaffUser) -> Response:
    return _tokens_page(request, session, user)


@router.post("", include_in_schema=False)
def create_token(
    request: Request, session: SessionDep, user: StaffUser, form: Annotated[TokenForm, Form()]
) -> Response:
    try:
        readable = {p.slug: p for p in membership.exportable_projects(session, user)}
        unknown = [slug for slug in form.projects if slug not in readable]
        if unknown:  # a project the user cannot read is named like one that does not exist
            raise tokens.TokenError(f"No project named {unknown[0]!r}.")
        chosen = [readable[slug] for slug in form.projects]
        created, secret = tokens.create_token(session, user=user, name=form.name, projects=chosen)
        audit.record(
            session, audit.Actor.of(user, "web", request), "token.create", target=("token", created.prefix),
            name=form.name, projects=sorted(form.projects),
        )  # fmt: skip
    except tokens.TokenError as error:
        return _tokens_page(request, session, user, error=str(error), status_code=422)
    return _tokens_page(request, session, user, secret=secret)


@router.post("/{token_id}/revoke", include_in_schema=False)
def revoke_token(request: Request, token_id: IdPath, session: SessionDep, user: StaffUser) -> Response:
    try:
        tokens.revoke_token(session, user=user, token_id=token_id)
    except tokens.TokenError as error:
        raise HTTPException(404, str(error)) from None
    audit.record(session, audit.Actor.of(user, "web", request), "token.revoke", target=("token", token_id))
    return _tokens_page(request, session, user)
