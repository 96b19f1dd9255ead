"""The label-quality pages in a real browser: charts drawn, hostile text inert, pausing a rater."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.models import Judgment, JudgmentSource, Role, User
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user

pytestmark = pytest.mark.browser

SLUG = "quality"
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def _seed(server: Any) -> int:
    with server.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        raters = [make_user(session, name) for name in ("rita", "sam")]
        project = make_project(session, SLUG, overlap=2)
        for i in range(4):
            comparison = make_pair(session, project, f"prompt {i} {HOSTILE}", f"A {i} {HOSTILE}", f"B {i}")
            for rater, choice in zip(raters, ("A", "B" if i % 2 else "A"), strict=True):
                session.add(
                    Judgment(
                        comparison_id=comparison.id,
                        rater_id=rater.id,
                        project_id=project.id,
                        choice=choice,
                        strength=1,
                        a_on_left=bool(i % 2),
                        source=JudgmentSource.human,
                        rationale=HOSTILE,
                        created_at=datetime(2026, 3, 2, 9, i, tzinfo=UTC),
                    )
                )
                comparison.judgment_count += 1
        return raters[0].id


def test_quality_pages_draw_charts_and_pause_a_rater(live_server: Any, page: Any) -> None:
    rita = _seed(live_server)
    page.goto(live_server.url("/login"))
    page.locator("input[name=username]").fill("ada")
    page.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")

    for path in ("quality", "raters", "disputes"):
        page.goto(live_server.url(f"/admin/projects/{SLUG}/{path}"))
        assert page.locator("h1").first.is_visible()
        if path != "disputes":
            assert page.locator("svg.chart").count() >= 4
            box = page.locator("svg.chart").first.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100
    # The disputed pairs show the hostile text as text, and nothing ran.
    assert page.locator(".dispute").count() == 2
    assert "<script>window.__xss=2</script>" in page.locator(".dispute").first.inner_text()
    assert page.locator(".markdown img, .markdown script").count() == 0
    assert page.evaluate("() => window.__xss") is None

    page.goto(live_server.url(f"/admin/projects/{SLUG}/raters"))
    row = page.locator("tr[data-rater=rita]")
    with page.expect_navigation():
        row.get_by_role("button", name="Pause").click()
    assert page.url == live_server.url(f"/admin/projects/{SLUG}/raters")
    assert page.locator("tr[data-rater=rita] .badge").inner_text() == "paused"
    paused = live_server.wait_for(lambda s: s.get(User, rita).is_paused, lambda value: value)
    assert paused is True
    with page.expect_navigation():
        page.locator("tr[data-rater=rita]").get_by_role("button", name="Resume").click()
    resumed = live_server.wait_for(lambda s: s.get(User, rita).is_paused, lambda value: not value)
    assert resumed is False
