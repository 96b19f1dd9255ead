"""The writers page: each writer's figures, outliers highlighted, names escaped, admins only."""

from __future__ import annotations

import pytest

from tests.utils.factories import make_project, make_user
from tests.utils.web import login
from tests.utils.writing_data import writer_history


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_writers_page(app, client) -> None:  # type: ignore[no-untyped-def]

    with app.state.sessionmaker() as session:
        project = make_project(session, "writers")
        make_user(session, "ada", "admin")
        lazy, good, reviewer = (make_user(session, name) for name in ("lazy<b>", "gwen", "rex"))
        writer_history(
            session, project, good, reviewer, n=12, accepted=12, score=5, seconds=60, text="good answer"
        )
        writer_history(
            session, project, lazy, reviewer, n=12, accepted=2, score=1, seconds=5, text="meh", lazy=12
        )
        session.commit()
    login(client, "ada")
    page = client.get("/admin/projects/writers/writers")
    assert page.status_code == 200 and 'data-testid="writer-quality"' in page.text
    assert "lazy&lt;b&gt;" in page.text and "lazy<b>" not in page.text  # escaped
    assert page.text.count('class="outlier"') == 1 and "acceptance 17% of 12 reviewed" in page.text
    assert "Mean review score per writer" in page.text  # the figures
    login(client, "rex")
    assert client.get("/admin/projects/writers/writers", headers={"accept": "text/html"}).status_code == 403
