"""Accessibility and layout of the main pages in Chromium, in the light and the dark theme.

axe-core (tests/browser/vendor/axe.min.js, see the README there) runs on the rating workbench, a
run page with live curves and the export page with its preview: no serious or critical violation
(colour contrast included, in both themes). The export preview stays within the window and shows
conversations as chat turns; the run page's curves label tiny values such as a learning rate.

axe is added with `add_init_script`, which Chromium runs outside the page's content-security
policy (the app's CSP forbids inline script, so a `<script>` tag would be refused).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.models import (
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Role,
    Run,
    RunKind,
    RunMetric,
    RunStatus,
)
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SLUG = "access"
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
LONG_WORD = "w" * 600  # one unbreakable token: it must not widen the page

RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: " + (n.failureSummary || "")),
  }));
}"""


def _seed(server: Any) -> int:
    """An admin, a project with judged pairs (hostile and very long texts) and a run with curves."""
    with server.sessionmaker() as session, session.begin():
        admin = make_user(session, "ada", Role.admin)
        project = make_project(session, SLUG, flags=["harmful"], instructions="Pick the **better** answer.")
        for i in range(4):
            texts = (f"question {i} {HOSTILE}", f"answer A{i} {LONG_WORD}", f"answer B{i} {HOSTILE}")
            pair = make_pair(session, project, *texts)
            if i < 3:
                session.add(
                    Judgment(
                        comparison_id=pair.id, rater_id=admin.id, project_id=project.id, choice="A",
                        strength=1, a_on_left=True, source=JudgmentSource.human, rationale=HOSTILE,
                        created_at=datetime(2026, 3, 2, 9, i, tzinfo=UTC),
                    )
                )  # fmt: skip
                pair.judgment_count += 1
        policy = ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base")
        session.add(policy)
        session.flush()
        run = Run(
            project_id=project.id, kind=RunKind.dpo, status=RunStatus.running, config={"learning_rate": 1e-5},
            base_model_id=policy.id, step=30, total_steps=60, started_at=datetime.now(UTC),
            heartbeat_at=datetime.now(UTC),
        )  # fmt: skip
        session.add(run)
        session.flush()
        for step in range(1, 31):
            lr = 1e-5 * step / 30  # a warm-up: values from 3.3e-7 to 1e-5
            session.add(RunMetric(run_id=run.id, step=step, name="train/learning_rate", value=lr))
            session.add(RunMetric(run_id=run.id, step=step, name="train/loss", value=0.69 - step * 0.01))
        return run.id


def _login(page: Any, server: Any) -> None:
    page.goto(server.url("/login"))
    page.locator("input[name=username]").fill("ada")
    page.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")


def _serious(page: Any) -> list[dict[str, Any]]:
    return [v for v in page.evaluate(RUN_AXE) if v["impact"] in ("serious", "critical")]


def _open_preview(page: Any, server: Any) -> None:
    page.goto(server.url(f"/export?project={SLUG}"))
    page.get_by_role("button", name="Preview").click()
    page.locator("#preview .preview-table").wait_for(state="visible")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation(live_server: Any, browser: Any, scheme: str) -> None:
    run_id = _seed(live_server)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    context.add_init_script(path=str(AXE))
    context.set_default_timeout(15_000)
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        page = context.new_page()
        _login(page, live_server)

        page.goto(live_server.url(f"/rate/{SLUG}"))
        page.locator("[data-testid=left-text]").wait_for(state="visible")
        found["workbench"] = _serious(page)
        page.keyboard.press("1")  # a selected pick has its own colours
        page.locator("details.instructions > summary").click()
        found["workbench, pick selected, instructions open"] = _serious(page)

        page.goto(live_server.url(f"/admin/runs/{run_id}"))
        page.locator(".chart[data-metric]").nth(1).wait_for(state="attached")
        found["run page"] = _serious(page)

        _open_preview(page, live_server)
        found["export page with preview"] = _serious(page)
        assert page.evaluate("window.__xss") is None
    finally:
        context.close()
    problems = {name: violations for name, violations in found.items() if violations}
    assert not problems, problems


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_export_preview_stays_in_the_page_and_shows_chat_turns(
    live_server: Any, browser: Any, width: int, height: int
) -> None:
    _seed(live_server)
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        _login(page, live_server)
        _open_preview(page, live_server)
        # The page is no wider than the window; the table scrolls inside its own box.
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        box = page.evaluate(
            """() => { const b = document.querySelector("#preview .scroll-x");
                       return {client: b.clientWidth, scroll: b.scrollWidth}; }"""
        )
        assert box["scroll"] > box["client"], box  # the wide table scrolls there
        # Conversations are chat turns (role, then text), never Python reprs.
        preview = page.locator("#preview .preview-table")
        text = preview.inner_text()
        assert "{'role'" not in text and "[{" not in text
        turns = preview.locator("td .chat .turn")
        assert turns.count() >= 3
        first = turns.first
        assert first.get_attribute("data-role") == "user"
        assert first.locator(".role").inner_text().strip().lower() == "user"
        assert "question" in first.inner_text()
        assistant = preview.locator("td .chat .turn[data-role=assistant]")
        assert assistant.count() >= 2 and "answer A" in assistant.first.inner_text()
        # Untrusted text is shown as text.
        assert "<script>" in text or "<img" in text
        assert page.evaluate("window.__xss") is None
        assert preview.locator("img, script").count() == 0
    finally:
        context.close()


def test_run_curves_label_tiny_values(live_server: Any, page: Any) -> None:
    run_id = _seed(live_server)
    _login(page, live_server)
    page.goto(live_server.url(f"/admin/runs/{run_id}"))
    chart = page.locator('.chart[data-metric="train/learning_rate"]')
    chart.wait_for(state="attached")
    page.wait_for_function(
        """() => (document.querySelector('.chart[data-metric="train/learning_rate"]')
                    .getAttribute("aria-label") || "").includes("30 points")"""
    )
    label = chart.get_attribute("aria-label")
    assert "last 1e-5" in label and "from 3.333e-7" in label, label
    ticks = page.evaluate("rlhfNumbers.formatTicks([0, 2e-6, 4e-6, 6e-6, 8e-6, 1e-5], 2e-6)")
    assert ticks == ["0", "2e-6", "4e-6", "6e-6", "8e-6", "1e-5"]
    assert page.evaluate("rlhfNumbers.formatTicks([0, 2.5e-6, 5e-6], 2.5e-6)") == ["0", "2.5e-6", "5.0e-6"]
    assert page.evaluate("rlhfNumbers.formatTicks([0, 0.25, 0.5], 0.25)") == ["0", "0.25", "0.50"]
    assert page.evaluate("rlhfNumbers.formatTicks([0, 5000, 10000], 5000)") == ["0", "5,000", "10,000"]
    assert page.evaluate("rlhfNumbers.formatTicks([0, 2e6, 4e6], 2e6)") == ["0", "2e6", "4e6"]
