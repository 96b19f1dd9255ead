"""Simulated raters read a response as a person sees it on the rating page: list numbers, code
blocks verbatim, what the markdown renderer and the sanitiser show (and not what they remove).
Each completion goes through the real workbench page and back through the parser."""

from __future__ import annotations

import pytest

from app.models import Role
from app.oracles import make_prefers_word, prefers_longer
from app.workbench_html import parse_workbench
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import login

OTHER = "plain"

CASES = {
    "numbered list": (
        "Steps:\n\n1. Peel the banana\n2. Slice it\n3. Eat",
        "Steps:\n1. Peel the banana\n2. Slice it\n3. Eat",
    ),
    "list starting at 144": ("144. is a square\n145. is not", "144. is a square\n145. is not"),
    "nested lists": (
        "1. fruit\n   - banana\n   - kiwi\n2. bread",
        "1. fruit\nbanana\nkiwi\n2. bread",
    ),
    "code block": (
        "Use:\n\n```python\ndef f(x):\n    if x:\n        return 1\n\n    return  2\n```\nDone.",
        "Use:\ndef f(x):\n    if x:\n        return 1\n\n    return  2\nDone.",
    ),
    "indented code": ("Run\n\n    make  all\n      again\n", "Run\nmake  all\n  again"),
    "inline markup": ("I like **banana** _bread_ and `x  =  1`", "I like banana bread and x = 1"),
    "raw html shown as text": (
        "<b>banana</b> & <script>x()</script>",
        "<b>banana</b> & <script>x()</script>",
    ),
    "image dropped": ("before ![banana](https://example.com/b.png) after", "before after"),
    "unsafe link kept as text": ("[click](javascript:alert(1)) ok", "[click](javascript:alert(1)) ok"),
    "table": ("| fruit | n |\n|---|---|\n| banana | 2 |", "fruit n\nbanana 2"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_rater_reads_what_the_page_shows(app, client, name: str) -> None:  # type: ignore[no-untyped-def]
    completion, seen = CASES[name]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "texts")
        make_pair(session, project, "question", completion, OTHER)
        make_user(session, "rita", Role.rater)
    login(client, "rita")
    page = parse_workbench(client.get("/rate/texts").text)
    sides = {page.left, page.right}
    assert OTHER in sides
    (text,) = sides - {OTHER}
    assert text == seen
    # an oracle scores the text as read: list numbers count as words, as a person reads them
    assert prefers_longer("question", text) == prefers_longer("question", seen)
    assert make_prefers_word("banana")("question", text) == seen.count("banana")
