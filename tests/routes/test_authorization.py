"""Every route of the app, for anonymous users and each role: the designed answer.

The routes are read from the router, so a new route is checked without anyone adding it here. A
route without a role check must be listed in PUBLIC, or this test fails.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from app.models import Role
from tests.utils.factories import make_project, make_user
from tests.utils.web import csrf_from, login

PUBLIC = {"/", "/login", "/logout", "/healthz", "/favicon.ico"}
LOGGED_IN_ANY_ROLE = {"/account/password"}


def _allowed_roles(route: APIRoute) -> frozenset[Role] | None:
    """The roles a route admits, from its dependency tree (None: no role check found)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        roles = getattr(dependency.call, "allowed_roles", None)
        if roles is not None:
            return frozenset(roles)
        stack.extend(dependency.dependencies)
    return None


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "demo", path)


def app_routes(app) -> list[APIRoute]:  # type: ignore[no-untyped-def]
    """Every FastAPI route of the app. `app.routes` holds an entry per included router (FastAPI
    includes routers lazily), so the routes are read through FastAPI's own flattening."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy inclusion: the routes are flat already
        return [route for route in app.routes if isinstance(route, APIRoute)]
    found = [c.original_route for c in iter_route_contexts(app.routes)]
    return [route for route in found if isinstance(route, APIRoute)]


def _web_routes(app) -> list[tuple[str, str, APIRoute]]:  # type: ignore[no-untyped-def]
    routes = []
    for route in app_routes(app):
        if route.path.startswith("/api/"):
            continue
        for method in sorted(route.methods):
            routes.append((method, route.path, route))
    assert len(routes) > 30, f"only {len(routes)} web routes found: is the walk reading the router?"
    return routes


def test_every_route_has_a_role_check_or_is_public(app) -> None:  # type: ignore[no-untyped-def]
    unguarded = [
        f"{method} {path}"
        for method, path, route in _web_routes(app)
        if _allowed_roles(route) is None and path not in PUBLIC | LOGGED_IN_ANY_ROLE
    ]
    assert unguarded == [], f"routes without a role check: {unguarded}"


@pytest.mark.parametrize("role", [None, Role.rater, Role.researcher, Role.admin])
def test_each_role_gets_the_designed_answer(app, client, role) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        for r in Role:
            make_user(session, f"user-{r.value}", r)
    headers = {"accept": "text/html"}
    if role is not None:
        assert login(client, f"user-{role.value}").status_code == 303
        headers["X-CSRF-Token"] = csrf_from(client.get("/account/password").text)
    else:
        headers["X-CSRF-Token"] = csrf_from(client.get("/login").text)

    wrong = []
    for method, path, route in _web_routes(app):
        if path in PUBLIC:
            continue
        allowed = _allowed_roles(route)
        response = client.request(method, _concrete(path), headers=headers, follow_redirects=False)
        if role is None:
            ok = response.status_code == 303 and response.headers["location"].startswith("/login")
        elif allowed is not None and role not in allowed:
            ok = response.status_code == 403
        else:
            ok = response.status_code not in (401, 403)
        if not ok:
            wrong.append(f"{method} {path} as {role}: {response.status_code}")
    assert wrong == []


def _api_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    routes = [
        (method, route.path)
        for route in app_routes(app)
        if route.path.startswith("/api/")
        for method in sorted(route.methods)
    ]
    assert len(routes) >= 6, f"only {len(routes)} API routes found"
    return routes


@pytest.mark.parametrize("who", [None, "session", Role.rater, Role.researcher, Role.admin])
def test_each_api_route_gives_the_designed_answer(app, client, who) -> None:  # type: ignore[no-untyped-def]
    """/api/: a bearer token of a researcher or an admin, and nothing else (no session cookie)."""
    from app.services import tokens

    secrets: dict[Role, str] = {}
    with app.state.sessionmaker() as session, session.begin():
        make_project(session, "demo")
        for r in Role:
            user = make_user(session, f"user-{r.value}", r)
            secrets[r] = tokens.create_token(session, user=user, name="t")[1]
    headers = {}
    if who == "session":
        assert login(client, f"user-{Role.admin.value}").status_code == 303
    elif who is not None:
        headers["Authorization"] = f"Bearer {secrets[who]}"

    wrong = []
    for method, path in _api_routes(app):
        response = client.request(method, _concrete(path), headers=headers, follow_redirects=False)
        if who in (None, "session"):
            ok = response.status_code == 401 and response.headers.get("www-authenticate") == "Bearer"
        elif who == Role.rater:
            ok = response.status_code == 403
        else:
            ok = response.status_code == 200
        if not ok:
            wrong.append(f"{method} {path} as {who}: {response.status_code} {response.text[:200]}")
    assert wrong == []
