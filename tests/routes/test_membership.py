"""Project membership: the membership axis of the authorization matrix, and what membership
changes do to leases, judgments, groups, limited researchers and project-scoped tokens.

The matrix walks the router like test_authorization: every project-scoped route (a `{slug}` in
the path, and the export routes that name a project in the query) is asked, by each kind of
outsider, about a members-only project they do not belong to and about a slug that does not
exist. The two answers must be the same (status and body, the slug aside).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.models import Assignment, AssignmentStatus, Judgment, Role, User, Visibility
from app.services import membership, tokens
from tests.routes.test_authorization import app_routes
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login

SECRET = "secretproj"  # members-only, the outsiders are not in it
GHOST = "ghostproj"  # does not exist
OPEN = "openproj"  # open to every rater; a limited researcher is a member

# Form fields every project-scoped POST might read: the same values for both slugs.
FORM = {
    "assignment_id": "1",
    "pick": "0",
    "visibility": "open",
    "usernames": "",
    "groups": "",
    "kind": "prompts",
    "name": "Renamed",
    "overlap": "1",
    "scale": "five",
    "action": "clear",
}
# Routes that name the project in the query rather than the path.
QUERY_SCOPED = [
    ("GET", "/export/preview?what=comparisons&project={slug}"),
    ("GET", "/export/download?what=comparisons&project={slug}"),
    ("GET", "/export/download?what=demos&project={slug}&archive=0"),
]


def _project_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    routes = [
        (method, route.path)
        for route in app_routes(app)
        if "{slug}" in route.path
        for method in sorted(route.methods)
    ]
    assert len(routes) >= 15, f"only {len(routes)} project-scoped routes found"
    return routes


def _url(path: str, slug: str) -> str:
    url = path.replace("{slug}", slug)
    return re.sub(r"\{[^}]+\}", "1", url)


def _shape(text: str, slug: str) -> str:
    """The body with the slug and the per-response CSRF token taken out."""
    text = text.replace(slug, "SLUG")
    return re.sub(r'(csrf_token" value="|data-csrf="|X-CSRF-Token":\s*")[^"]+', r"\1TOKEN", text)


def _seed(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Projects, users and tokens for the matrix; returns the bearer secrets by name."""
    secrets: dict[str, str] = {}
    with app.state.sessionmaker() as session, session.begin():
        secret = make_project(session, SECRET, visibility=Visibility.members)
        opened = make_project(session, OPEN)
        for project in (secret, opened):
            make_pair(session, project, "q", "a", "b")
        outsider = make_user(session, "outsider", Role.rater)
        member = make_user(session, "member", Role.rater)
        limited = make_user(session, "limited", Role.researcher)
        limited.all_projects = False
        admin = make_user(session, "boss", Role.admin)
        membership.add_members(session, secret, usernames=["member"])
        membership.add_members(session, opened, usernames=["limited"])
        secrets["limited"] = tokens.create_token(session, user=limited, name="t")[1]
        secrets["scoped"] = tokens.create_token(session, user=admin, name="t", projects=[opened])[1]
        secrets["admin"] = tokens.create_token(session, user=admin, name="t")[1]
        del outsider, member
    return secrets


def _requests(app):  # type: ignore[no-untyped-def]
    """(method, url template) of every project-scoped web route and query-scoped export."""
    web = [(m, p) for m, p in _project_routes(app) if not p.startswith("/api/")]
    return web + QUERY_SCOPED


@pytest.mark.parametrize("who", ["outsider", "limited"])
def test_a_non_member_gets_the_answer_for_a_missing_project(app, client, who) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    assert login(client, who).status_code == 303
    headers = {"accept": "text/html", "X-CSRF-Token": csrf_from(client.get("/account/password").text)}

    checked, wrong = 0, []
    for method, template in _requests(app):
        answers = []
        for slug in (SECRET, GHOST):
            url = template.replace("{slug}", slug)
            url = re.sub(r"\{[^}]+\}", "1", url)
            data = FORM if method == "POST" else None
            response = client.request(method, url, headers=headers, data=data, follow_redirects=False)
            answers.append((response.status_code, _shape(response.text, slug)))
        checked += 1
        if answers[0] != answers[1]:
            wrong.append(f"{method} {template} as {who}: {answers[0][0]} vs missing {answers[1][0]}")
    assert wrong == []
    assert checked >= 20


def test_a_member_gets_through_where_an_outsider_does_not(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    login(client, "outsider")
    assert client.get(f"/rate/{SECRET}").status_code == 404
    assert client.get(f"/rate/{GHOST}").status_code == 404
    rate_list = client.get("/rate").text
    assert SECRET not in rate_list
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/account/password").text)})

    login(client, "member")
    page = client.get(f"/rate/{SECRET}")
    assert page.status_code == 200 and 'id="workbench"' in page.text
    token = csrf_from(page.text)
    done = htmx_post(
        client, f"/rate/{SECRET}/judgments", token, {"assignment_id": assignment_id(page.text), "pick": 1}
    )
    assert done.status_code == 200
    assert htmx_post(client, f"/rate/{SECRET}/undo", token, {}).status_code == 200
    listed = client.get("/rate", follow_redirects=False).text
    assert f"/rate/{SECRET}" in listed and f"/rate/{OPEN}" in listed


def test_the_api_and_tokens_get_the_answer_for_a_missing_project(app, client) -> None:  # type: ignore[no-untyped-def]
    """A token scoped to one project, and a limited researcher's token, read only their projects:
    any other is answered exactly like a slug that does not exist."""
    secrets = _seed(app)
    api = [(m, p) for m, p in _project_routes(app) if p.startswith("/api/")]
    assert len(api) >= 5
    checked, wrong = 0, []
    for name in ("scoped", "limited"):
        headers = {"Authorization": f"Bearer {secrets[name]}"}
        listed = client.get("/api/v1/projects", headers=headers).json()["data"]
        assert [p["slug"] for p in listed] == [OPEN], name
        for method, path in api:
            answers = []
            for slug in (SECRET, GHOST):
                response = client.request(method, _url(path, slug), headers=headers)
                answers.append((response.status_code, _shape(response.text, slug)))
            assert answers[0][0] == 404
            ok = client.request(method, _url(path, OPEN), headers=headers)
            checked += 1
            if answers[0] != answers[1] or ok.status_code != 200:
                wrong.append(f"{method} {path} as {name}: {answers} / open {ok.status_code}")
    assert wrong == [] and checked == 2 * len(api)
    # An unscoped admin token still reads everything.
    admin = {"Authorization": f"Bearer {secrets['admin']}"}
    assert client.get(f"/api/v1/projects/{SECRET}/comparisons", headers=admin).status_code == 200
    assert {p["slug"] for p in client.get("/api/v1/projects", headers=admin).json()["data"]} == {SECRET, OPEN}


def test_a_limited_researcher_exports_only_their_projects(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    login(client, "limited")
    page = client.get("/export").text
    assert OPEN in page and SECRET not in page
    assert SECRET not in client.get("/projects").text
    assert client.get(f"/export/download?what=comparisons&project={OPEN}&archive=0").status_code == 200
    denied = client.get(f"/export/download?what=comparisons&project={SECRET}&archive=0")
    missing = client.get(f"/export/download?what=comparisons&project={GHOST}&archive=0")
    assert denied.status_code == missing.status_code == 404
    # A token the limited researcher asks for a project they cannot read is refused like a typo.
    token = csrf_from(client.get("/account/tokens").text)
    refused = client.post("/account/tokens", data={"name": "x", "projects": SECRET, "csrf_token": token})
    assert refused.status_code == 422 and "No project named" in refused.text


def test_removal_releases_leases_keeps_judgments_and_refuses_old_assignments(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, SECRET, visibility=Visibility.members)
        for i in range(3):
            make_pair(session, project, f"q{i}", "a", "b")
        make_user(session, "member", Role.rater)
        make_user(session, "boss", Role.admin)
        membership.add_members(session, project, usernames=["member"])

    login(client, "member")
    page = client.get(f"/rate/{SECRET}")
    token = csrf_from(page.text)
    first = assignment_id(page.text)
    assert (
        htmx_post(
            client, f"/rate/{SECRET}/judgments", token, {"assignment_id": first, "pick": -1}
        ).status_code
        == 200
    )
    held = assignment_id(client.get(f"/rate/{SECRET}").text)  # the second pair, leased

    with app.state.sessionmaker() as session, session.begin():
        project = membership_project(session)
        assert membership.remove_members(session, project, usernames=["member"]) == 1
    with app.state.sessionmaker() as session:
        lease = session.get(Assignment, held)
        assert lease is not None and lease.status == AssignmentStatus.lapsed
        assert session.scalar(select(func.count()).select_from(Judgment)) == 1

    missing = htmx_post(client, f"/rate/{GHOST}/judgments", token, {"assignment_id": held, "pick": 1})
    for path, data in (
        ("judgments", {"assignment_id": held, "pick": 1}),
        ("skip", {"assignment_id": held}),
        ("undo", {}),
    ):
        refused = htmx_post(client, f"/rate/{SECRET}/{path}", token, data)
        assert refused.status_code == missing.status_code == 404, path
        assert _shape(refused.text, SECRET) == _shape(missing.text, GHOST)
    assert client.get(f"/rate/{SECRET}").status_code == 404
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Judgment)) == 1


def membership_project(session):  # type: ignore[no-untyped-def]
    from app.services.projects import get_project

    return get_project(session, SECRET)


def test_group_membership_and_leaving_a_group(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, SECRET, visibility=Visibility.members)
        make_pair(session, project, "q", "a", "b")
        make_user(session, "vendor1", Role.rater)
        make_user(session, "boss", Role.admin)
        group = membership.create_group(session, "Vendor-A")
        assert group.name == "vendor-a"
        membership.add_to_group(session, group, ["vendor1"])
        membership.add_members(session, project, groups=["vendor-a"])

    login(client, "vendor1")
    page = client.get(f"/rate/{SECRET}")
    assert page.status_code == 200
    held = assignment_id(page.text)
    with app.state.sessionmaker() as session, session.begin():
        group = membership.group_named(session, "vendor-a")
        assert membership.remove_from_group(session, group, ["vendor1"]) == 1
    assert client.get(f"/rate/{SECRET}").status_code == 404
    with app.state.sessionmaker() as session:
        assert session.get(Assignment, held).status == AssignmentStatus.lapsed


def test_restricting_an_open_project_releases_outsiders_only(app, client) -> None:  # type: ignore[no-untyped-def]
    from app.services import rating

    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, OPEN, overlap=3)
        make_pair(session, project, "q", "a", "b")
        raters = [make_user(session, name, Role.rater) for name in ("in1", "out1")]
        admin = make_user(session, "boss", Role.admin)
        leases = {
            u.username: rating.claim_next(session, project=project, rater_id=u.id) for u in [*raters, admin]
        }
        membership.add_members(session, project, usernames=["in1"], added_by=admin)
        assert membership.set_visibility(session, project, Visibility.members) == 1
        ids = {name: a.id for name, a in leases.items()}
    with app.state.sessionmaker() as session:
        status = {name: session.get(Assignment, i).status for name, i in ids.items()}
    assert status == {
        "in1": AssignmentStatus.active,
        "out1": AssignmentStatus.lapsed,
        "boss": AssignmentStatus.active,
    }


def test_membership_pages_are_admin_only_and_csrf_protected(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_project(session, SECRET)
        make_user(session, "boss", Role.admin)
        make_user(session, "rita", Role.rater)
        make_user(session, "rex", Role.researcher)
    login(client, "boss")
    token = csrf_from(client.get(f"/admin/projects/{SECRET}").text)
    no_csrf = client.post(
        f"/admin/projects/{SECRET}/visibility", data={"visibility": "members"}, follow_redirects=False
    )
    assert no_csrf.status_code == 403
    done = client.post(
        f"/admin/projects/{SECRET}/visibility",
        data={"visibility": "members", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    added = client.post(
        f"/admin/projects/{SECRET}/members", data={"usernames": "rita, nobody", "csrf_token": token}
    )
    assert added.status_code == 422 and "No user named nobody" in added.text
    client.post(f"/admin/projects/{SECRET}/members", data={"usernames": "rita", "csrf_token": token})
    page = client.get(f"/admin/projects/{SECRET}").text
    assert "rita" in page and "by boss" in page
    assert (
        client.post("/admin/users/groups", data={"name": "night-shift", "csrf_token": token}).status_code
        == 200
    )
    groups = client.get("/admin/users/groups").text
    assert "night-shift" in groups and "rex" in groups
    with app.state.sessionmaker() as session:
        rex = session.scalars(select(User).where(User.username == "rex")).one()
        member_id = membership.list_members(session, membership_project(session))[0].id
    client.post(f"/admin/users/groups/researchers/{rex.id}", data={"csrf_token": token})
    with app.state.sessionmaker() as session:
        assert session.get(User, rex.id).all_projects is False
    removed = client.post(
        f"/admin/projects/{SECRET}/members/{member_id}/remove",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    with app.state.sessionmaker() as session:
        assert membership.list_members(session, membership_project(session)) == []
