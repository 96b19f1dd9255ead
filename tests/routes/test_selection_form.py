"""The project form sets the selection strategy and the random share, refuses bad values with
the field named, and shows what was chosen."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Project, Role, SelectionStrategy
from tests.utils.factories import make_user
from tests.utils.web import csrf_from, login


def test_project_form_sets_the_selection_strategy(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
    login(client, "ada")
    token = csrf_from(client.get("/admin/projects/new").text)
    base = {"slug": "picky", "name": "Picky", "overlap": "1", "csrf_token": token}
    bad = client.post("/admin/projects", data=base | {"selection_strategy": "loudest"})
    assert bad.status_code == 422 and "selection_strategy" in bad.text
    bad = client.post("/admin/projects", data=base | {"selection_strategy": "mix", "random_percent": "150"})
    assert bad.status_code == 422 and "random_share" in bad.text
    created = client.post(
        "/admin/projects",
        data=base | {"selection_strategy": "mix", "random_percent": "30"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "picky")).one()
        assert project.selection_strategy == SelectionStrategy.mix and abs(project.random_share - 0.3) < 1e-9
    page = client.get("/admin/projects/picky").text
    assert '<option value="mix" selected>' in page and 'value="30.0"' in page
    edited = client.post(
        "/admin/projects/picky",
        data={"name": "Picky", "overlap": "1", "selection_strategy": "uncertainty", "random_percent": "30",
              "is_active": "true", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert edited.status_code == 303
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "picky")).one()
        assert project.selection_strategy == SelectionStrategy.uncertainty
