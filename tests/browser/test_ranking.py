"""The ranking workbench in Chromium: a rater orders 4 completions with the keyboard alone (a tie
and an all-bad line), undoes, orders again by typing the order, then orders the next ranking by
dragging chips and clicking a place. Each stored order must name the right completions although
every rater sees them in a shuffled order; the layout keeps the prompt and all four responses on
a wide screen and turns into a list of expandable cards on a narrow one."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.models import Completion, Ranking, RankingJudgment, Role
from tests.utils.factories import PASSWORD, make_project, make_user
from tests.utils.rankings import make_ranking

pytestmark = pytest.mark.browser

SLUG = "ranks"
RATER = "rory"
# Each text names its true quality, so the test can tell which completion a letter shows.
RANKINGS = [
    ("Which city is the capital of France?",
     ["best: Paris.", "good-one: it is Paris, I think.", "good-two: Paris, on the Seine.", "awful: Berlin."]),
    ("How many legs has a spider?",
     ["best: eight.", "good-one: 8 legs.", "good-two: eight, like all arachnids.", "awful: six."]),
]  # fmt: skip


def _seed(server: Any) -> None:
    with server.sessionmaker() as session, session.begin():
        project = make_project(session, SLUG, task_mix={"rank": 1.0}, overlap=1, rank_k=4)
        for prompt, texts in RANKINGS:
            make_ranking(session, project, prompt, texts)
        make_user(session, RATER, Role.rater)


SETTLE_COUNTER = """() => {
  window.__settles = 0;
  document.addEventListener("htmx:afterSettle", () => { window.__settles += 1; });
}"""


def _login(page: Any, server: Any) -> None:
    page.goto(server.url("/login"))
    page.locator("input[name=username]").press_sequentially(RATER)
    page.locator("input[name=password]").press_sequentially(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    page.wait_for_url(server.url(f"/rate/{SLUG}"))
    # htmx and ranking.js are deferred scripts: wait until ranking.js has shown the order panel.
    page.wait_for_function(
        "() => window.htmx !== undefined && document.readyState === 'complete'"
        " && !document.querySelector('#rank-form .order-panel').hidden"
    )
    page.evaluate(SETTLE_COUNTER)


def _letters(page: Any) -> dict[str, str]:
    """Quality name ("best", "good-one", ...) -> the letter it is shown under."""
    found = {}
    for card in page.locator(".rank-card").all():
        quality = card.locator(".card-text").inner_text().split(":")[0].strip()
        found[quality] = card.get_attribute("data-letter")
    return found


def _assignment(page: Any) -> int:
    return int(page.input_value("#rank-form input[name=assignment_id]"))


def _wait_for_swap(page: Any, settled: int) -> None:
    page.wait_for_function("(n) => window.__settles > n", arg=settled)


def _settles(page: Any) -> int:
    return int(page.evaluate("() => window.__settles"))


def _stored(server: Any, assignment_rows: int) -> list[tuple[dict[str, int], int | None]]:
    """Each stored order as {quality: rank} and its cut-off, oldest first, once there are
    `assignment_rows` of them."""

    def read(session: Any) -> list[tuple[dict[str, int], int | None]]:
        out = []
        for judgment in session.scalars(select(RankingJudgment).order_by(RankingJudgment.id)):
            ranking = session.get(Ranking, judgment.ranking_id)
            texts = dict(session.execute(select(Completion.id, Completion.text).where(
                Completion.id.in_(ranking.completion_ids))).all())  # fmt: skip
            ranks = {texts[cid].split(":")[0]: rank
                     for cid, rank in zip(ranking.completion_ids, judgment.ranks, strict=True)}  # fmt: skip
            out.append((ranks, judgment.cutoff_rank))
        return out

    return server.wait_for(read, lambda rows: len(rows) == assignment_rows)


def test_rank_by_keyboard_undo_type_the_order_then_drag(live_server: Any, page: Any) -> None:
    _seed(live_server)
    _login(page, live_server)

    # Wide screen: the prompt and the four responses side by side, all on screen.
    tops = [box["y"] for box in (card.bounding_box() for card in page.locator(".rank-card").all())]
    assert len(tops) == 4 and max(tops) - min(tops) < 2, tops
    assert page.locator(".conversation").is_visible()
    assert "<kbd>" in page.locator(".rank-card h2").first.inner_html()  # the letter key is shown

    first = _assignment(page)
    letter = _letters(page)
    order = [letter["best"], letter["good-one"], letter["good-two"], letter["awful"]]
    assert sorted(order) == ["A", "B", "C", "D"]
    # Keyboard only: each letter places its response next; then tie good-two with the one above
    # and draw the all-bad line below that tie.
    for key in order:
        page.keyboard.press(key.lower())
    page.keyboard.press(letter["good-two"].lower())
    page.keyboard.press("=")
    page.keyboard.press("x")
    tie = "=".join(sorted([letter["good-one"], letter["good-two"]]))  # tied letters are listed A-Z
    expected = f"{letter['best']} {tie} | {letter['awful']}"
    assert page.input_value("[data-testid=order-input]") == expected
    assert page.locator(f"[data-testid=rank-of-{letter['awful']}]").inner_text() == "rank 3, unacceptable"
    assert page.locator(f"[data-testid=rank-of-{letter['good-two']}]").inner_text() == "rank 2 (tie)"
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_swap(page, settled)
    assert _assignment(page) != first
    [(ranks, cutoff)] = _stored(live_server, 1)
    assert ranks == {"best": 1, "good-one": 2, "good-two": 2, "awful": 3} and cutoff == 2

    # Undo: the same ranking comes back, shown in the same order, with the withdrawn order.
    settled = _settles(page)
    page.keyboard.press("u")
    _wait_for_swap(page, settled)
    assert _assignment(page) == first and _letters(page) == letter
    assert page.input_value("[data-testid=order-input]") == expected
    assert _stored(live_server, 0) == []
    # Again, this time by typing the order: awful first, then best, good-two, good-one; no line.
    page.keyboard.press("/")
    page.keyboard.press("Control+a")
    page.keyboard.type(f"{letter['awful']}{letter['best']}{letter['good-two']}{letter['good-one']}".lower())
    assert page.locator(f"[data-testid=rank-of-{letter['awful']}]").inner_text() == "rank 1"
    settled = _settles(page)
    page.keyboard.press("Enter")
    _wait_for_swap(page, settled)
    [(ranks, cutoff)] = _stored(live_server, 1)
    assert ranks == {"awful": 1, "best": 2, "good-two": 3, "good-one": 4} and cutoff is None

    # The second ranking, by mouse: place all in display order, drag D onto A, click C's "2".
    second = _assignment(page)
    assert second != first
    letter = _letters(page)
    for key in "abcd":
        page.keyboard.press(key)
    page.locator("[data-testid=chip-D]").drag_to(page.locator("[data-testid=chip-A]"))
    assert page.input_value("[data-testid=order-input]") == "D A B C"
    page.locator("[data-testid=card-C] [data-place='2']").click()
    assert page.input_value("[data-testid=order-input]") == "D C A B"
    # Drag the all-bad line (x draws it at the bottom) up above B.
    page.keyboard.press("Escape")
    page.keyboard.press("x")
    page.locator("[data-testid=chip-line]").drag_to(page.locator("[data-testid=chip-B]"))
    assert page.input_value("[data-testid=order-input]") == "D C A | B"
    by_letter = {value: key for key, value in letter.items()}
    page.locator("#rank-form button[type=submit].primary").click()
    rows = _stored(live_server, 2)
    assert rows[1] == ({by_letter["D"]: 1, by_letter["C"]: 2, by_letter["A"]: 3, by_letter["B"]: 4}, 3)
    page.wait_for_selector("[data-testid=empty]")


def test_an_incomplete_order_is_not_sent_and_narrow_screens_list_the_cards(
    live_server: Any, page: Any
) -> None:
    _seed(live_server)
    page.set_viewport_size({"width": 480, "height": 860})
    _login(page, live_server)
    boxes = [card.bounding_box() for card in page.locator(".rank-card").all()]
    assert all(b["y"] < c["y"] for b, c in zip(boxes, boxes[1:], strict=False)), (
        "a list, one card under another"
    )
    card = page.locator("[data-testid=card-B]")
    max_height = "(e) => parseFloat(getComputedStyle(e).maxHeight)"
    assert card.locator(".card-text").evaluate(max_height) < 100  # a few lines, clipped
    assert card.locator("[data-expand]").is_visible()
    page.keyboard.press("b")  # selecting a card opens it
    assert card.locator(".card-text").evaluate(max_height) > 200

    page.keyboard.press("Enter")  # only B placed: refused in the page, nothing posted
    assert "missing: A, C, D" in page.locator("[data-testid=order-status]").inner_text()
    assert _stored(live_server, 0) == []
