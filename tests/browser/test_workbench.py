"""The rating workbench in a real browser: log in, then label pairs with the keyboard alone.

What a rater sees (texts, pre-selected answers, counters, shortcut hints) is checked together with
what the database stores, in particular that the randomised left/right order of every pair is
undone when the pick is stored: a stored choice must name the completion that was preferred.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.models import Assignment, AssignmentStatus, Judgment, Project, Role, Scale
from app.models.types import utcnow
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user

pytestmark = pytest.mark.browser

SLUG = "kbd"
RATER = "rita"
FLAGS = ["harmful", "factual error"]
# (prompt, completion A, completion B): every text is recognisable on its own.
PAIRS = [
    ("Name a primary colour.", "Alpha-one: red is a primary colour.", "Bravo-one: maybe teal?"),
    ("What is 2 + 2?", "Alpha-two: the answer is four.", "Bravo-two: it is 4, of course."),
    ("Who wrote Hamlet?", "Alpha-three: Christopher Marlowe.", "Bravo-three: William Shakespeare."),
    ("Boiling point of water?", "Alpha-four: 100 degrees Celsius.", "Bravo-four: 90 degrees Celsius."),
]
# Typed into the rationale box: it holds shortcut keys (q, w, u, s, x, digits, /) that must be
# taken as text there, not as commands.
RATIONALE = "quite sure: 2 sources / uses wiki, x"

FORM = "#judge-form"
ASSIGNMENT_INPUT = "#judge-form input[name=assignment_id]"


def _seed(server: Any, *, pairs: int = 4, a_on_left: list[bool] | None = None) -> dict[str, Any]:
    """A five-point project with `pairs` pairs and a rater; optionally pre-assign fixed orders.

    Returns the comparison ids by their A and B texts.
    """
    by_text: dict[str, tuple[int, str]] = {}
    with server.sessionmaker() as session, session.begin():
        project = make_project(session, SLUG, scale=Scale.five, overlap=1, flags=FLAGS)
        comparisons = [make_pair(session, project, *texts) for texts in PAIRS[:pairs]]
        rater = make_user(session, RATER, Role.rater)
        for comparison, (_, text_a, text_b) in zip(comparisons, PAIRS, strict=False):
            by_text[text_a] = (comparison.id, "A")
            by_text[text_b] = (comparison.id, "B")
        if a_on_left is not None:
            # The rater's active leases are served in id order, so this fixes both the order in
            # which the pairs come and which completion is shown on the left.
            now = utcnow()
            for comparison, left in zip(comparisons, a_on_left, strict=True):
                session.add(
                    Assignment(
                        comparison_id=comparison.id,
                        rater_id=rater.id,
                        project_id=project.id,
                        a_on_left=left,
                        status=AssignmentStatus.active,
                        leased_at=now,
                        lease_expires_at=now + timedelta(seconds=project.lease_seconds),
                    )
                )
    return {"by_text": by_text}


def _login(page: Any, server: Any) -> None:
    page.goto(server.url("/login"))
    page.locator("input[name=username]").press_sequentially(RATER)
    page.locator("input[name=password]").press_sequentially(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    page.wait_for_url(server.url(f"/rate/{SLUG}"))
    page.wait_for_load_state("load")
    # rate.js and htmx are deferred scripts: wait until both are in place.
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


def _shown(page: Any, by_text: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """The pair on screen: its assignment, texts and which stored completion is on the left."""
    left = page.locator("[data-testid=left-text]").inner_text().strip()
    right = page.locator("[data-testid=right-text]").inner_text().strip()
    left_id, left_side = by_text[left]
    right_id, right_side = by_text[right]
    assert left_id == right_id and {left_side, right_side} == {"A", "B"}, (left, right)
    return {
        "assignment_id": int(page.input_value(ASSIGNMENT_INPUT)),
        "comparison_id": left_id,
        "left": left,
        "right": right,
        "a_on_left": left_side == "A",
    }


def _done_today(page: Any) -> int:
    return int(page.locator("[data-testid=done-today]").inner_text())


SETTLE_COUNTER = """() => {
  if (window.__settles === undefined) {
    window.__settles = 0;
    document.addEventListener("htmx:afterSettle", () => { window.__settles += 1; });
  }
  return window.__settles;
}"""


def _settles(page: Any) -> int:
    """How many htmx swaps have settled on this page (counting starts at the first call)."""
    return int(page.evaluate(SETTLE_COUNTER))


def _wait_for_assignment(
    page: Any, settled: int, *, changed_from: int | None = None, equal_to: int | None = None
) -> None:
    """Wait until htmx has swapped in another (or a given) assignment AND settled the swap.

    Only after settling has htmx wired up the new forms: this keeps the flow independent of the
    settle delay (test_shortcut_right_after_a_swap_stays_in_the_page covers the fast presses).
    """
    script = """([settled, old, want]) => {
      const i = document.querySelector("#judge-form input[name=assignment_id]");
      if (!i || window.__settles <= settled) return false;
      return want === null ? i.value !== String(old) : i.value === String(want);
    }"""
    page.wait_for_function(script, arg=[settled, changed_from, equal_to])


def _judgments(server: Any) -> dict[int, Judgment]:
    with server.sessionmaker() as session:
        rows = session.scalars(select(Judgment)).all()
        session.expunge_all()
    return {row.comparison_id: row for row in rows}


def _wait_for_count(server: Any, count: int) -> dict[int, Judgment]:
    # Polling keeps the check independent of when the request's transaction commits relative to
    # the response (until app/deps.py used scope="function", the commit trailed the response).
    return server.wait_for(lambda _s: _judgments(server), lambda rows: len(rows) == count)


def _checked(page: Any, selector: str) -> bool:
    return bool(page.locator(selector).is_checked())


ORDERS = {
    "random": None,
    "a-left-first": [True, False, True, False],
    "b-left-first": [False, True, False, True],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_keyboard_only_labelling_with_undo(live_server: Any, page: Any, order: str) -> None:
    forced = ORDERS[order]
    by_text = _seed(live_server, a_on_left=forced)["by_text"]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _login(page, live_server)
    page.evaluate("window.__marker = 1")

    # The shortcuts are on screen next to the controls they work.
    hints = [k.strip() for k in page.locator(f"{FORM} kbd").all_inner_texts()]
    for key in ["1", "2", "3", "4", "5", "x", "q", "w", "/", "Enter", "s", "u"]:
        assert key in hints, f"no visible <kbd>{key}</kbd> in the form: {hints}"
    for kbd in page.locator(f"{FORM} kbd").all():
        assert kbd.is_visible()
    assert page.locator(f"{FORM} .pick--2").inner_text().startswith("A is much better")
    # "?" opens and closes the full list of shortcuts.
    assert page.locator("#help").is_hidden()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    assert "Undo your last judgment" in page.locator("#help").inner_text()
    page.keyboard.press("?")
    assert page.locator("#help").is_hidden()

    assert _done_today(page) == 0
    remaining = int(page.locator("[data-testid=remaining]").inner_text())
    assert remaining == 4

    # --- pair 1: A (left) is much better -------------------------------------------------
    first = _shown(page, by_text)
    if forced is not None:
        assert first["a_on_left"] is forced[0]
    page.keyboard.press("1")
    assert _checked(page, f"{FORM} input[name=pick][value='-2']")
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=first["assignment_id"])
    assert _done_today(page) == 1
    assert len(_wait_for_count(live_server, 1)) == 1

    # --- pair 2: tie ----------------------------------------------------------------------
    second = _shown(page, by_text)
    assert second["comparison_id"] != first["comparison_id"]
    if forced is not None:
        assert second["a_on_left"] is forced[1]
    assert not page.locator(f"{FORM} input[name=pick]:checked").count(), "a fresh pair starts blank"
    page.keyboard.press("3")
    assert _checked(page, f"{FORM} input[name=pick][value='0']")
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=second["assignment_id"])
    assert _done_today(page) == 2
    assert len(_wait_for_count(live_server, 2)) == 2

    # --- pair 3: B (right) is better, flagged harmful, with a rationale --------------------
    third = _shown(page, by_text)
    assert third["comparison_id"] not in {first["comparison_id"], second["comparison_id"]}
    if forced is not None:
        assert third["a_on_left"] is forced[2]
    page.keyboard.press("4")
    page.keyboard.press("q")
    assert _checked(page, f"{FORM} input[name=pick][value='1']")
    assert _checked(page, f"{FORM} input[name=flags][value='harmful']")
    assert not _checked(page, f"{FORM} input[name=flags][value='factual error']")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "rationale"
    page.keyboard.type(RATIONALE)
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.name || ''") != "rationale"
    assert page.input_value(f"{FORM} textarea[name=rationale]") == RATIONALE
    # Typing in the box did not work the shortcuts (q, w, x, 2, u, s are all in the text).
    assert _checked(page, f"{FORM} input[name=pick][value='1']")
    assert _checked(page, f"{FORM} input[name=flags][value='harmful']")
    assert not _checked(page, f"{FORM} input[name=flags][value='factual error']")
    assert not _checked(page, f"{FORM} input[name=both_bad]")
    assert int(page.input_value(ASSIGNMENT_INPUT)) == third["assignment_id"]
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=third["assignment_id"])
    assert _done_today(page) == 3
    stored = _wait_for_count(live_server, 3)
    assert third["comparison_id"] in stored
    fourth = _shown(page, by_text)

    # --- undo: pair 3 comes back with its answer pre-selected, and leaves the database ------
    settled = _settles(page)
    page.keyboard.press("u")
    _wait_for_assignment(page, settled, equal_to=third["assignment_id"])
    again = _shown(page, by_text)
    assert (again["left"], again["right"]) == (third["left"], third["right"]), "same order"
    notices = page.locator("#workbench .notice").all_inner_texts()
    assert any("withdrawn" in n for n in notices), page.locator("#workbench").inner_html()
    assert _checked(page, f"{FORM} input[name=pick][value='1']")
    assert page.locator(f"{FORM} input[name=pick]:checked").count() == 1
    assert _checked(page, f"{FORM} input[name=flags][value='harmful']")
    assert not _checked(page, f"{FORM} input[name=flags][value='factual error']")
    assert page.input_value(f"{FORM} textarea[name=rationale]") == RATIONALE.strip()
    assert _done_today(page) == 2
    stored = _wait_for_count(live_server, 2)
    assert set(stored) == {first["comparison_id"], second["comparison_id"]}

    # The stored choices name the preferred completion whatever side it was shown on.
    one = stored[first["comparison_id"]]
    assert (one.choice.value, one.strength) == ("A" if first["a_on_left"] else "B", 2)
    assert one.a_on_left is first["a_on_left"]
    assert (one.both_bad, one.flags, one.rationale) == (False, [], "")
    two = stored[second["comparison_id"]]
    assert (two.choice.value, two.strength) == ("tie", 0)
    assert (two.both_bad, two.flags, two.rationale) == (False, [], "")
    with live_server.sessionmaker() as session:
        reopened = session.get(Assignment, third["assignment_id"])
        assert reopened is not None and reopened.status == AssignmentStatus.active

    # Submitting the restored answer stores it, mapped through the pair's order.
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, equal_to=fourth["assignment_id"])
    assert _done_today(page) == 3
    stored = _wait_for_count(live_server, 3)
    three = stored[third["comparison_id"]]
    assert (three.choice.value, three.strength) == ("B" if third["a_on_left"] else "A", 1)
    assert three.flags == ["harmful"]
    assert three.rationale == RATIONALE.strip()

    # All of it happened in one page load, without errors.
    assert page.evaluate("window.__marker") == 1
    assert page.url == live_server.url(f"/rate/{SLUG}")
    assert errors == []


def test_double_enter_stores_one_judgment(live_server: Any, page: Any) -> None:
    by_text = _seed(live_server, pairs=2)["by_text"]
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and "/judgments" in r.url else None,
    )
    _login(page, live_server)
    page.evaluate("window.__marker = 1")
    shown = _shown(page, by_text)
    page.keyboard.press("2")
    settled = _settles(page)
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=shown["assignment_id"])
    page.wait_for_load_state("networkidle")

    stored = _wait_for_count(live_server, 1)
    assert list(stored) == [shown["comparison_id"]]
    with live_server.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Judgment)) == 1
    judgment = stored[shown["comparison_id"]]
    assert (judgment.choice.value, judgment.strength) == ("A" if shown["a_on_left"] else "B", 1)
    assert _done_today(page) == 1
    assert page.evaluate("window.__marker") == 1
    # The second Enter was either dropped while the first was in flight (hx-sync), or reached
    # the next, still blank pair and was refused there: it never stores a second judgment.
    assert len(posts) in (1, 2), posts
    if len(posts) == 2:
        assert "Choose which response is better" in page.locator("#workbench").inner_text()


def test_undo_pressed_while_the_submit_is_in_flight(live_server: Any, page: Any) -> None:
    """'Enter' then at once 'u': the undo must not overtake the submit and withdraw the pair before.

    (Before the forms shared one hx-sync lock on #workbench, it did: pair 2 was withdrawn while
    pair 3 was stored, and the counter on screen disagreed with the database.)
    """
    by_text = _seed(live_server)["by_text"]
    _login(page, live_server)
    first = _shown(page, by_text)
    page.keyboard.press("1")
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=first["assignment_id"])
    second = _shown(page, by_text)
    _wait_for_count(live_server, 1)
    page.keyboard.press("3")
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=second["assignment_id"])
    _wait_for_count(live_server, 2)
    third = _shown(page, by_text)
    # The rater submits pair 3 and at once asks to undo: the undo waits for the submit and then
    # withdraws pair 3. It must never withdraw pair 2.
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.keyboard.press("u")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(200)
    stored = _judgments(live_server)
    assert second["comparison_id"] in stored, "undo withdrew an older judgment"
    assert first["comparison_id"] in stored
    assert _done_today(page) == len(stored), "the counter on screen disagrees with the database"
    assert third["comparison_id"] not in stored, "the undo pressed during the submit was lost"
    assert _shown(page, by_text)["assignment_id"] == third["assignment_id"]
    assert _checked(page, f"{FORM} input[name=pick][value='1']")


@pytest.mark.parametrize("key", ["Enter", "u"])
def test_shortcut_right_after_a_swap_stays_in_the_page(live_server: Any, page: Any, key: str) -> None:
    """A fast rater's next key, 5 ms after the new pair appeared, is handled like any other.

    (htmx wires up swapped-in forms when the swap settles; with its default 20 ms settle delay a
    key in that window submitted the bare form natively and the rater left the page.)
    """
    by_text = _seed(live_server)["by_text"]
    _login(page, live_server)
    page.evaluate("window.__marker = 1")
    first = _shown(page, by_text)
    # The key is sent from the page itself: Playwright cannot time a press this precisely.
    page.evaluate(
        """key => document.addEventListener("htmx:afterSwap", () => setTimeout(() => {
             document.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
           }, 5), {once: true})""",
        key,
    )
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__marker") == 1, f"the page was left for {page.url}"
    assert page.url == live_server.url(f"/rate/{SLUG}")
    if key == "Enter":  # the new pair has no pick yet: the form says so
        assert "Choose which response is better" in page.locator("#workbench .error").inner_text()
        assert len(_wait_for_count(live_server, 1)) == 1
    else:  # the undo brings the first pair back with its answer pre-selected
        assert _shown(page, by_text)["assignment_id"] == first["assignment_id"]
        assert _checked(page, f"{FORM} input[name=pick][value='-2']")
        assert "withdrawn" in page.locator("#workbench .notice").inner_text()
        assert len(_wait_for_count(live_server, 0)) == 0


def test_a_failed_submit_says_so_and_enter_sends_it_again(live_server: Any, page: Any) -> None:
    """The server answers 503 (the database restarting): nothing is swapped, the rater is told
    the answer was not saved, the choice stays selected, and Enter sends it again."""
    by_text = _seed(live_server, pairs=2)["by_text"]
    _login(page, live_server)
    shown = _shown(page, by_text)
    page.route(
        "**/judgments",
        lambda route: route.fulfill(status=503, body="The database is not reachable right now."),
    )
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    alert = page.locator("#request-failed")
    alert.wait_for(state="visible")
    assert "Not saved" in alert.inner_text() and "503" in alert.inner_text()
    assert _shown(page, by_text)["assignment_id"] == shown["assignment_id"]
    assert _judgments(live_server) == {}

    page.unroute("**/judgments")
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=shown["assignment_id"])
    stored = _wait_for_count(live_server, 1)
    assert list(stored) == [shown["comparison_id"]]
    assert page.locator("#request-failed").count() == 0  # the new pair replaced the notice


def test_waiting_page_picks_up_a_pair_when_another_raters_lease_runs_out(live_server: Any, page: Any) -> None:
    """The only pair is leased to another rater: the page says "Waiting for other raters" (not
    "All done"), polls by itself, and shows the pair once that lease has run out."""
    by_text = _seed(live_server, pairs=1)["by_text"]
    with live_server.sessionmaker() as session, session.begin():
        holder = make_user(session, "holder", Role.rater)
        holder_id = holder.id
        comparison_id = next(iter(by_text.values()))[0]
        now = utcnow()
        session.add(
            Assignment(
                comparison_id=comparison_id, rater_id=holder.id,
                project_id=session.scalar(select(Project.id).where(Project.slug == SLUG)),
                a_on_left=True, status=AssignmentStatus.active,
                leased_at=now, lease_expires_at=now + timedelta(hours=1),
            )
        )  # fmt: skip
    _login(page, live_server)
    waiting = page.locator("[data-testid=waiting]")
    assert "Waiting for other raters" in waiting.inner_text()
    assert page.locator("[data-testid=empty]").count() == 0
    with live_server.sessionmaker() as session, session.begin():  # the other rater walks away
        session.execute(
            update(Assignment).where(Assignment.rater_id == holder_id).values(lease_expires_at=utcnow())
        )
    page.locator("[data-testid=left-text]").wait_for(state="visible", timeout=30_000)
    assert _shown(page, by_text)["comparison_id"] == comparison_id
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.locator("[data-testid=empty]").wait_for(state="visible")
    assert list(_wait_for_count(live_server, 1)) == [comparison_id]


def test_both_bad_alone_is_a_complete_answer(live_server: Any, page: Any) -> None:
    """'x' then Enter: no pick, yet the answer is stored, as a tie marked both bad."""
    by_text = _seed(live_server, pairs=2)["by_text"]
    _login(page, live_server)
    shown = _shown(page, by_text)
    page.keyboard.press("x")
    assert _checked(page, f"{FORM} input[name=both_bad]")
    assert not page.locator(f"{FORM} input[name=pick]:checked").count()
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_assignment(page, settled, changed_from=shown["assignment_id"])
    assert page.locator("#workbench .error").count() == 0
    stored = _wait_for_count(live_server, 1)
    judgment = stored[shown["comparison_id"]]
    assert (judgment.choice.value, judgment.strength, judgment.both_bad) == ("tie", 0, True)
    assert _done_today(page) == 1
