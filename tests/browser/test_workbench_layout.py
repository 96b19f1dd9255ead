"""The workbench's layout in Chromium: the answers come first, at three window sizes.

The visible rectangles of the prompt, both responses and the judge form are measured on first
load: the beginning of both responses is on screen and under no control, the form is whole on
screen and overlaps nothing, and a long answer scrolls inside its own pane down to its last line
with nothing covering it. The instructions start collapsed and the rater's choice to open them
is remembered per project after a reload. The dark theme follows the system setting.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.models import Role, Scale
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user

pytestmark = pytest.mark.browser

SLUG = "layout"
OTHER = "layout-two"
RATER = "rita"
INSTRUCTIONS = """\
Read the conversation, then both responses. Pick the response that is **more helpful, correct
and honest**. Prefer the shorter one when both are equally good.

* Use *much better* when one response is clearly usable and the other is not.
* Choose **tie** only when you cannot tell them apart in quality.
* Tick **both are bad** when neither answers the request, whichever you prefer.
* Flag factual errors and harmful content, and say why in the rationale when you can.
"""
PROMPT = "Explain, step by step, how a hash map handles collisions, with an example in Python."


def _long(tag: str, paragraphs: int = 40) -> str:
    body = "\n\n".join(
        f"{tag} paragraph {i}: a bucket holds every key whose hash lands on it, and a lookup walks "
        f"the bucket comparing keys until it finds the one asked for or reaches the end."
        for i in range(1, paragraphs)
    )
    return f"{tag} first line of the answer.\n\n{body}\n\n{tag} last line of the answer."


SIZES = [(1280, 800), (1366, 768), (390, 844)]

MEASURE = """() => {
  const rect = (el) => {
    if (!el) return null;
    const b = el.getBoundingClientRect();
    return {top: Math.round(b.top), bottom: Math.round(b.bottom), left: Math.round(b.left),
            right: Math.round(b.right)};
  };
  const firstLine = (side) => document.querySelector(`[data-testid=${side}-text] > :first-child`);
  // Is the middle of the first line of a response's text the text itself (nothing on top)?
  const uncovered = (el) => {
    const b = el.getBoundingClientRect();
    if (b.top < 0 || b.top + 8 > innerHeight) return false;
    const hit = document.elementFromPoint(b.left + Math.min(40, b.width / 2), b.top + 8);
    return !!hit && el.contains(hit);
  };
  return {
    viewport: [innerWidth, innerHeight],
    prompt: rect(document.querySelector(".conversation")),
    left: rect(document.querySelector("[data-side=left]")),
    right: rect(document.querySelector("[data-side=right]")),
    leftFirst: rect(firstLine("left")),
    rightFirst: rect(firstLine("right")),
    leftUncovered: uncovered(firstLine("left")),
    rightUncovered: uncovered(firstLine("right")),
    form: rect(document.querySelector("#judge-form")),
    instructions: rect(document.querySelector(".instructions")),
    scrollWidth: document.scrollingElement.scrollWidth,
  };
}"""

SCROLL_TO_END = """(side) => {
  const text = document.querySelector(`[data-testid=${side}-text]`);
  const last = text.lastElementChild;
  last.scrollIntoView({block: "end"});
  const b = last.getBoundingClientRect();
  const hit = document.elementFromPoint(b.left + 20, b.bottom - 6);
  const form = document.querySelector("#judge-form").getBoundingClientRect();
  return {lastTop: b.top, lastBottom: b.bottom, height: innerHeight, visible: !!hit && last.contains(hit),
          formTop: form.top, formBottom: form.bottom, pageScroll: document.scrollingElement.scrollTop};
}"""


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    across = a["left"] < b["right"] and b["left"] < a["right"]
    return across and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def _seed(server: Any) -> None:
    with server.sessionmaker() as session, session.begin():
        for slug in (SLUG, OTHER):
            project = make_project(
                session, slug, scale=Scale.five, flags=["harmful", "factual error"], instructions=INSTRUCTIONS
            )
            for k in range(3):
                make_pair(session, project, f"{PROMPT} ({k})", _long(f"Alpha-{k}"), _long(f"Bravo-{k}", 25))
        make_user(session, RATER, Role.rater)


def _login(page: Any, server: Any, slug: str = SLUG) -> None:
    page.goto(server.url("/login"))
    page.locator("input[name=username]").fill(RATER)
    page.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    page.goto(server.url(f"/rate/{slug}"))
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_answers_come_first(live_server: Any, browser: Any, width: int, height: int) -> None:
    _seed(live_server)
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        _login(page, live_server)
        m = page.evaluate(MEASURE)
        # Nothing is wider than the window.
        assert m["scrollWidth"] <= width, m
        # The prompt starts on screen, above the answers.
        assert 0 <= m["prompt"]["top"] < height and m["prompt"]["bottom"] <= m["left"]["top"], m
        # The beginning of both responses is on screen, and no control covers it.
        for side in ("left", "right"):
            first = m[f"{side}First"]
            assert first["top"] >= 0 and first["bottom"] <= height, (side, m)
            assert m[f"{side}Uncovered"], (side, m)
        # The whole judge form is on screen and overlaps neither response.
        assert m["form"]["top"] >= 0 and m["form"]["bottom"] <= height, m
        assert not _overlap(m["form"], m["left"]) and not _overlap(m["form"], m["right"]), m
        # The submit button (with its hint) is visible.
        assert page.locator("#judge-form button.primary").is_visible()

        # A long answer scrolls inside its pane, to its last line, with nothing covering it.
        for side in ("left", "right"):
            end = page.evaluate(SCROLL_TO_END, side)
            assert end["visible"], (side, end)
            assert end["lastBottom"] <= end["formTop"] or end["lastTop"] >= end["formBottom"], (side, end)
    finally:
        context.close()


def test_instructions_collapse_and_the_choice_is_remembered_per_project(live_server: Any, page: Any) -> None:
    _seed(live_server)
    _login(page, live_server)
    details = page.locator("details.instructions")
    assert details.get_attribute("open") is None, "instructions start collapsed"
    assert not page.get_by_text("Choose **tie**").count()
    page.locator("details.instructions > summary").click()
    assert details.get_attribute("open") is not None
    page.reload()
    page.wait_for_load_state("load")
    page.wait_for_function("() => document.querySelector('details.instructions').open")
    assert page.locator("details.instructions .markdown").is_visible()
    # Another project keeps its own setting.
    page.goto(live_server.url(f"/rate/{OTHER}"))
    page.wait_for_load_state("load")
    page.wait_for_timeout(100)
    assert page.locator("details.instructions").get_attribute("open") is None
    # Closing it again is remembered too.
    page.goto(live_server.url(f"/rate/{SLUG}"))
    page.wait_for_function("() => document.querySelector('details.instructions').open")
    page.locator("details.instructions > summary").click()
    page.reload()
    page.wait_for_load_state("load")
    page.wait_for_timeout(100)
    assert page.locator("details.instructions").get_attribute("open") is None


def _luminance(css: str) -> float:
    """Relative luminance of an `rgb(...)`/`rgba(...)` colour (WCAG 2)."""
    parts = [float(p) for p in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]

    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in parts)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_dark_theme_follows_the_system_setting(live_server: Any, browser: Any) -> None:
    _seed(live_server)
    colours = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
        try:
            page = context.new_page()
            _login(page, live_server)
            colours[scheme] = page.evaluate(
                """() => {
                  const style = (sel) => getComputedStyle(document.querySelector(sel));
                  return {body: style("body").backgroundColor, text: style("body").color,
                          pane: style("[data-side=left]").backgroundColor,
                          paneText: style("[data-testid=left-text]").color,
                          input: style("#judge-form textarea").backgroundColor};
                }"""
            )
        finally:
            context.close()
    light, dark = colours["light"], colours["dark"]
    assert _luminance(light["body"]) > 0.8 and _luminance(light["text"]) < 0.1, light
    assert _luminance(dark["body"]) < 0.05 and _luminance(dark["text"]) > 0.6, dark
    assert _luminance(dark["pane"]) < 0.05 and _luminance(dark["paneText"]) > 0.6, dark
    assert _luminance(dark["input"]) < 0.1, dark
