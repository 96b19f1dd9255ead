"""The writing workbench in a real browser, keyboard only: one rater writes a demonstration
(a code block and a list) and reloads mid-way, another improves a model's completion, a third
reviews both; an expired session while typing loses nothing; bad answers are refused with the
text kept. What the database stores is checked against what was typed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.models import (
    Completion,
    Demonstration,
    DemonstrationReview,
    Draft,
    ProjectMember,
    Prompt,
    Role,
    Visibility,
)
from app.models.types import utcnow
from app.models.user import WebSession
from app.services import writing
from app.services.content import messages_hash, text_hash
from tests.utils.factories import PASSWORD, make_model_version, make_project, make_user

pytestmark = pytest.mark.browser

SLUG = "wr"
WRITE_PROMPT = "Show a Python loop and give two tips."
IMPROVE_PROMPT = "What is recursion?"
ORIGINAL = "Recursion is when a function repeats."
FIRST_HALF = "A loop:\n\n```python\nfor i in range(3):\n    print(i)\n```\n"
SECOND_HALF = "\nTips:\n\n- name the variable well\n- keep the body short"
ADDED = " It calls itself on a smaller input until a base case stops it."


def _seed(server: Any, *, kinds: dict[str, list[str]], **fields: Any) -> dict[str, int]:
    """A members-only project: one prompt to write for, one completion (of a model version) to
    improve; each rater a member limited to the given task kinds."""
    with server.sessionmaker() as session, session.begin():
        project = make_project(
            session, SLUG, task_mix={"write": 1.0, "improve": 1.0, "review": 1.0},
            visibility=Visibility.members, min_words=10, max_words=200, **fields,
        )  # fmt: skip
        prompts = []
        for text in (WRITE_PROMPT, IMPROVE_PROMPT):
            messages = [{"role": "user", "content": text}]
            prompts.append(
                Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
            )
        session.add_all(prompts)
        session.flush()
        version = make_model_version(session, "policy-v1", project=project)
        completion = Completion(
            prompt_id=prompts[1].id,
            text=ORIGINAL,
            content_hash=text_hash(ORIGINAL),
            model_version_id=version.id,
        )
        session.add(completion)
        session.flush()
        writing.add_tasks(session, project, prompt_ids=[prompts[0].id], completion_ids=[completion.id])
        ids = {"write_prompt": prompts[0].id, "improve_prompt": prompts[1].id, "completion": completion.id,
               "version": version.id}  # fmt: skip
        for name, allowed in kinds.items():
            user = make_user(session, name, Role.rater)
            session.add(ProjectMember(project_id=project.id, user_id=user.id, task_kinds=allowed))
            ids[name] = user.id
    return ids


def _login(page: Any, server: Any, username: str) -> None:
    page.goto(server.url("/login"))
    page.locator("input[name=username]").press_sequentially(username)
    page.locator("input[name=password]").press_sequentially(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    page.wait_for_url(server.url(f"/rate/{SLUG}"))
    _ready(page)


def _ready(page: Any) -> None:
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


def _type(page: Any, text: str) -> None:
    """Types like a person: every character a key press (new lines are Enter)."""
    page.keyboard.type(text)


def _editor(page: Any) -> str:
    return str(page.locator("[data-testid=answer]").input_value())


def _wait_saved(server: Any, user_id: int, text: str) -> None:
    def read(session: Any) -> list[str]:
        return list(session.scalars(select(Draft.text).where(Draft.user_id == user_id)))

    assert server.wait_for(read, lambda texts: texts == [text]) == [text]


def _rows(server: Any, model: type) -> list[Any]:
    with server.sessionmaker() as session:
        rows = list(session.scalars(select(model).order_by(model.id)))  # type: ignore[attr-defined]
        session.expunge_all()
    return rows


def test_write_improve_and_review_by_keyboard(live_server: Any, browser: Any) -> None:
    ids = _seed(live_server, kinds={"rita": ["write"], "sam": ["improve"], "tess": ["review"]})
    errors: list[str] = []

    def new_page() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    # --- rita writes, reloading half-way ---------------------------------------------------
    page = new_page()
    _login(page, live_server, "rita")
    assert "Write the next assistant response" in page.inner_text("#workbench")
    assert WRITE_PROMPT in page.inner_text(".conversation")
    assert "aim for 10–200 words" in page.inner_text("[data-testid=counts]")
    assert page.evaluate("document.activeElement.name") == "text", "the editor has the focus"
    _type(page, FIRST_HALF)
    page.wait_for_selector("#preview pre code")
    assert "print(i)" in page.inner_text("#preview pre code")
    _wait_saved(live_server, ids["rita"], FIRST_HALF)
    words = len(FIRST_HALF.split())
    assert page.inner_text("[data-count=words]") == str(words)
    assert f"{10 - words} words short of the guidance" in page.inner_text("[data-count=guidance]")
    page.reload()
    _ready(page)
    assert _editor(page) == FIRST_HALF, "the draft is back after a reload"
    assert "print(i)" in page.inner_text("#preview pre code")
    _type(page, SECOND_HALF)
    page.wait_for_selector("#preview li")
    assert page.locator("#preview li").all_inner_texts() == ["name the variable well", "keep the body short"]
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("[data-testid=empty]")
    [written] = _rows(live_server, Demonstration)
    assert written.response == FIRST_HALF + SECOND_HALF
    assert (written.prompt_id, written.author_id, written.source) == (
        ids["write_prompt"],
        ids["rita"],
        "written",
    )
    assert written.edited_from_completion_id is None and written.lazy_flags == []
    assert written.time_spent_ms > 0
    assert _rows(live_server, Draft) == [], "a submitted draft goes"
    page.context.close()

    # --- sam improves a completion ---------------------------------------------------------
    page = new_page()
    _login(page, live_server, "sam")
    assert "Improve the last response" in page.inner_text("#workbench")
    assert _editor(page) == ORIGINAL, "the editor starts from the completion"
    assert page.evaluate("document.activeElement.name") == "text", "the editor has the focus"
    page.keyboard.press("Control+End")
    _type(page, ADDED)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("[data-testid=empty]")
    improved = _rows(live_server, Demonstration)[1]
    assert improved.response == ORIGINAL + ADDED
    assert (improved.prompt_id, improved.author_id, improved.source) == (
        ids["improve_prompt"],
        ids["sam"],
        "improved",
    )
    assert improved.edited_from_completion_id == ids["completion"]
    assert improved.edited_from_model_version_id == ids["version"]
    assert improved.edit_distance == len(ADDED) and "+Recursion is when" in improved.diff
    page.context.close()

    # --- tess reviews both -----------------------------------------------------------------
    page = new_page()
    _login(page, live_server, "tess")
    assert "print(i)" in page.inner_text("[data-testid=reviewed-text]")
    page.keyboard.press("a")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=reviewed-text]')?.innerText.includes('base case')"
    )
    assert "-Recursion is when a function repeats." in page.locator("[data-testid=diff]").text_content()
    page.keyboard.press("Enter")  # not yet complete: the workbench says what is missing
    page.wait_for_selector("text=Accept (a) or reject (r) the demonstration first.")
    page.keyboard.press("r")
    page.keyboard.press("2")
    page.keyboard.press("/")
    _type(page, "too short on base cases")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("[data-testid=empty]")
    reviews = _rows(live_server, DemonstrationReview)
    assert [(r.demonstration_id, r.reviewer_id, r.accepted, r.score, r.note) for r in reviews] == [
        (written.id, ids["tess"], True, 5, ""),
        (improved.id, ids["tess"], False, 2, "too short on base cases"),
    ]
    assert [d.review_status for d in _rows(live_server, Demonstration)] == ["accepted", "rejected"]
    page.context.close()
    assert errors == []


def test_an_expired_session_while_typing_loses_nothing(live_server: Any, page: Any) -> None:
    ids = _seed(live_server, kinds={"rita": ["write"]})
    _login(page, live_server, "rita")
    _type(page, "The first part,")
    _wait_saved(live_server, ids["rita"], "The first part,")
    with live_server.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    _type(page, " and the second part typed after the session ended.")
    page.wait_for_selector("text=Your session has expired.")
    _wait_saved(live_server, ids["rita"], "The first part,")  # the server never got the rest
    page.keyboard.press("Escape")
    page.locator("[data-testid=draft-status] a").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.locator("input[name=username]").press_sequentially("rita")
    page.locator("input[name=password]").press_sequentially(PASSWORD)
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    page.wait_for_url(live_server.url(f"/rate/{SLUG}"))
    _ready(page)
    full = "The first part, and the second part typed after the session ended."
    assert _editor(page) == full, "the draft is back after logging in again"
    assert "Restored your unsaved draft" in page.inner_text("[data-testid=draft-status]")
    _wait_saved(live_server, ids["rita"], full)
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")  # a retried submit
    page.wait_for_selector("[data-testid=empty]")
    rows = live_server.wait_for(
        lambda s: list(s.scalars(select(Demonstration.response))), lambda r: len(r) == 1
    )
    assert rows == [full]


def test_bad_answers_are_refused_with_the_text_kept(live_server: Any, page: Any) -> None:
    ids = _seed(live_server, kinds={"rita": ["write"]}, max_answer_chars=60)
    _login(page, live_server, "rita")
    _type(page, "   ")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=answer: is empty; write the response before submitting")
    assert _editor(page) == "   "
    page.keyboard.press("Control+a")
    _type(page, "x" * 61)
    assert "1 characters over the limit" in page.inner_text("[data-count=guidance]")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=answer: is 61 characters long; this project takes at most 60")
    assert _editor(page) == "x" * 61
    page.keyboard.press("Control+a")
    _type(page, "before")
    page.keyboard.insert_text("\x00")
    _type(page, "after")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Not submitted: form.text: contains a NUL character")
    assert _editor(page) == "before\x00after"
    assert _rows(live_server, Demonstration) == []
    with live_server.sessionmaker() as session:
        drafts = list(session.scalars(select(Draft.text).where(Draft.user_id == ids["rita"])))
    assert len(drafts) <= 1 and not any("\x00" in text for text in drafts)
