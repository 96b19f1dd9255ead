"""Hostile model output, prompts, instructions and project settings never run in the rater's browser.

Every payload below would set `window.__xss` if the page executed it. The page is opened as a
rater, the pair is judged so that htmx swaps in a second hostile pair (swapped content takes
another path than the first render), and then nothing may have run: no variable, no dialog, no
dangerous element inside the rendered markdown, while the payloads stay readable as text.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.models import Judgment, Role, Scale
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user

pytestmark = pytest.mark.browser

SLUG = "hostile"
PROMPT = "<script>window.__xss=1</script>"
COMPLETION_A = (
    '<img src=x onerror="window.__xss=2">\n\n'
    "[click me](javascript:window.__xss=4)\n\n"
    "[click upper](JaVaScRiPt:window.__xss=40) and [click entity](&#106;avascript:window.__xss=41)\n\n"
    "<javascript:window.__xss=42>\n\n"
    "[click ref][evil]\n\n[evil]: javascript:window.__xss=43\n"
)
COMPLETION_B = (
    '<svg onload="window.__xss=3">\n\n'
    "```html\n<script>window.__xss=5</script>\n```\n\n"
    '<a href="javascript:window.__xss=44">raw link</a>\n\n'
    "![pixel](https://example.invalid/p.png)\n"
)
INSTRUCTIONS = (
    'Please be careful.\n\n<iframe src="javascript:window.__xss=6"></iframe>\n\n'
    '<details open ontoggle="window.__xss=60">x</details>\n'
)
# Plain-text fields (not markdown) rendered by the templates: escaped by Jinja.
PROJECT_NAME = "Hostile <script>window.__xss=7</script>"
HOSTILE_FLAG = "<img src=x onerror=window.__xss=8>"
SECOND_PROMPT = "<style onload=window.__xss=9></style><b onmouseover=window.__xss=10>bold?</b>"
SECOND_A = "<form action=javascript:window.__xss=11><button>go</button></form>"
SECOND_B = '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=12">'

DANGEROUS = (
    ".markdown script, .markdown img, .markdown svg, .markdown iframe, .markdown style, "
    ".markdown form, .markdown math, .markdown details, .markdown [onerror], .markdown [onload], "
    "a[href^='javascript' i]"
)

RECORDER = """
window.__seen = { violations: [], dialogs: [] };
document.addEventListener("securitypolicyviolation", (e) => {
  window.__seen.violations.push(e.violatedDirective + " " + (e.blockedURI || "") + " " +
                                (e.sample || ""));
});
"""


def _seed(server: Any) -> None:
    with server.sessionmaker() as session, session.begin():
        project = make_project(
            session,
            SLUG,
            name=PROJECT_NAME,
            scale=Scale.five,
            instructions=INSTRUCTIONS,
            flags=[HOSTILE_FLAG],
        )
        # Pairs are served newest first: the second pair arrives through an htmx swap.
        make_pair(session, project, SECOND_PROMPT, SECOND_A, SECOND_B)
        make_pair(session, project, PROMPT, COMPLETION_A, COMPLETION_B)
        make_user(session, "rita", Role.rater)


def _assert_nothing_ran(page: Any, dialogs: list[str], errors: list[str]) -> None:
    # Give any event-driven payload (onerror, onload, ontoggle) time to fire.
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
    assert errors == []
    found = page.eval_on_selector_all(DANGEROUS, "els => els.map(e => e.outerHTML)")
    assert found == [], f"dangerous elements in the page: {found}"
    # Inline event handlers anywhere in the document (not only in .markdown).
    handlers = page.evaluate(
        """() => [...document.querySelectorAll('*')].flatMap(el =>
             [...el.attributes].filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))"""
    )
    assert handlers == []


def test_hostile_content_is_shown_as_text_and_never_runs(live_server: Any, page: Any) -> None:
    _seed(live_server)
    dialogs: list[str] = []
    errors: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text} @ {m.location.get('url')}"))
    page.add_init_script(RECORDER)

    page.goto(live_server.url("/login"))
    page.locator("input[name=username]").fill("rita")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("button[type=submit]").click()
    page.wait_for_url(live_server.url(f"/rate/{SLUG}"))
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")

    # The payloads are readable, as text.
    prompt = page.locator(".conversation").inner_text()
    assert PROMPT in prompt
    left_right = page.locator(".responses").inner_text()
    assert "<script>window.__xss=5</script>" in left_right  # inside the code block
    assert '<img src=x onerror="window.__xss=2">' in left_right
    assert '<svg onload="window.__xss=3">' in left_right
    assert page.locator(".responses pre code").count() == 1
    assert page.get_by_text(PROMPT, exact=True).is_visible()
    page.locator(".instructions > summary").click()  # the instructions start collapsed
    assert '<iframe src="javascript:window.__xss=6"></iframe>' in page.locator(".instructions").inner_text()
    assert PROJECT_NAME in page.locator("h1").inner_text()
    assert PROJECT_NAME in page.title()
    assert HOSTILE_FLAG in page.locator("#judge-form").inner_text()

    # Links: javascript: URLs were not made into links; if one were, clicking it must do nothing.
    for name in ["click me", "click upper", "click entity", "click ref", "raw link"]:
        link = page.get_by_role("link", name=name)
        if link.count():
            href = link.first.get_attribute("href") or ""
            assert not href.lower().lstrip().startswith("javascript"), href
            link.first.click(no_wait_after=True)
    assert "javascript:window.__xss=4" in left_right  # stays as plain text
    _assert_nothing_ran(page, dialogs, errors)

    # Judge the pair (keyboard, hostile flag ticked): htmx swaps in the second hostile pair.
    old = page.input_value("#judge-form input[name=assignment_id]")
    page.keyboard.press("3")
    page.keyboard.press("q")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "old => document.querySelector('#judge-form input[name=assignment_id]').value !== old",
        arg=old,
    )
    assert "bold?" in page.locator(".conversation").inner_text()
    assert SECOND_PROMPT in page.locator(".conversation").inner_text()
    _assert_nothing_ran(page, dialogs, errors)
    # The hostile flag is stored as the project spells it.
    stored = live_server.wait_for(
        lambda session: [j.flags for j in session.scalars(select(Judgment))], lambda rows: rows != []
    )
    assert stored == [[HOSTILE_FLAG]]

    violations = page.evaluate("window.__seen.violations")
    assert violations == [], f"CSP violations (something tried to run or load): {violations}"
    # The browser asks for /favicon.ico on its own; the app has none (404). Nothing else failed.
    problems = [m for m in console if m.startswith("error") and "/favicon.ico" not in m]
    assert problems == [], problems
