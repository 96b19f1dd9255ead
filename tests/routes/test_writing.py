"""The writing workbench's routes: drafts (answered with the sanitised preview), submits stored
once, bad answers refused with the text kept, skip, undo, reviews (never one's own), and the
roles and CSRF they check."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select, update

from app.models import (
    Completion,
    Demonstration,
    DemonstrationReview,
    Draft,
    Project,
    ProjectMember,
    Prompt,
    Role,
    User,
    Visibility,
    WritingAssignment,
    WritingTask,
)
from app.models.types import utcnow
from app.models.user import WebSession
from app.services import membership, writing
from app.services.content import messages_hash, text_hash
from tests.utils.factories import make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login


def _setup(app, *, kinds=("write",), **fields):  # type: ignore[no-untyped-def]
    """A project of writing tasks (one prompt, one completion to improve) and raters rita, sam."""
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(
            session, "wr", task_mix={kind: 1.0 for kind in kinds}, flags=["harmful"], **fields
        )
        messages = [{"role": "user", "content": "Explain *recursion*"}]
        prompt = Prompt(project_id=project.id, messages=messages, content_hash=messages_hash(messages))
        session.add(prompt)
        session.flush()
        completion = Completion(
            prompt_id=prompt.id, text="It repeats.", content_hash=text_hash("It repeats.")
        )
        session.add(completion)
        session.flush()
        writing.add_tasks(session, project, prompt_ids=[prompt.id], completion_ids=[completion.id])
        for name in ("rita", "sam"):
            make_user(session, name, Role.rater)


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_draft_preview_submit_once_and_the_next_task(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/wr")
    assert page.status_code == 200 and 'id="write-form"' in page.text
    assert "Explain <em>recursion</em>" in page.text and "/static/js/writing.js" in page.text
    token, aid = csrf_from(page.text), assignment_id(page.text)
    draft = htmx_post(
        client, "/rate/wr/drafts", token, {"assignment_id": aid, "text": "- one\n\n<script>x</script>"}
    )
    assert draft.status_code == 200 and "<li>one</li>" in draft.text and "<script" not in draft.text
    again = client.get("/rate/wr")
    assert "- one\n\n&lt;script&gt;x&lt;/script&gt;</textarea>" in again.text, (
        "the draft is back in the editor"
    )
    answer = {"assignment_id": aid, "text": "It calls **itself**.", "time_spent_ms": 5000}
    first = htmx_post(client, "/rate/wr/demonstrations", token, answer)
    second = htmx_post(client, "/rate/wr/demonstrations", token, answer)
    assert first.status_code == second.status_code == 200
    assert "already saved" in second.text and 'data-testid="empty"' in second.text
    assert _count(app, Demonstration) == 1 and _count(app, Draft) == 0
    with app.state.sessionmaker() as session:
        demo = session.scalars(select(Demonstration)).one()
        assert demo.response == "It calls **itself**." and demo.source == "written"
        assert demo.time_spent_ms == 5000


def test_bad_answers_get_clear_messages_and_keep_the_text(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, max_answer_chars=40)
    login(client, "rita")
    page = client.get("/rate/wr")
    token, aid = csrf_from(page.text), assignment_id(page.text)
    htmx_post(client, "/rate/wr/drafts", token, {"assignment_id": aid, "text": "my draft"})
    cases = {
        "   \n\t ": "answer: is empty; write the response before submitting",
        "x" * 41: "answer: is 41 characters long; this project takes at most 40",
    }
    for text, message in cases.items():
        response = htmx_post(client, "/rate/wr/demonstrations", token, {"assignment_id": aid, "text": text})
        assert response.status_code == 422 and message in response.text, response.text
        assert "Your text is still in the editor." in response.text
        kept = re.search(r'data-testid="answer"[^>]*>(.*?)</textarea>', response.text, re.S)
        assert kept and kept.group(1) == text, "the refused answer is back in the editor"
    # NUL never reaches a route: the input guard names the field (static/js/writing.js shows
    # that message and keeps the editor); a draft (sent as multipart) is refused by the service.
    nul = htmx_post(client, "/rate/wr/demonstrations", token, {"assignment_id": aid, "text": "a\x00b"})
    assert nul.status_code == 422 and "form.text: contains a NUL character" in nul.text
    nul_draft = client.post(
        "/rate/wr/drafts", data={"assignment_id": str(aid)}, files={"text": (None, "a\x00b")},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert nul_draft.status_code == 422
    assert nul_draft.text == "Draft not saved: draft: contains a NUL character", nul_draft.text
    assert _count(app, Demonstration) == 0
    with app.state.sessionmaker() as session:
        assert session.scalars(select(Draft.text)).one() == "my draft", "the saved draft is untouched"


def test_improve_prefills_and_undo_puts_the_text_back(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, kinds=("improve",))
    login(client, "rita")
    page = client.get("/rate/wr")
    assert "Improve the last response" in page.text
    assert 'data-testid="answer" autofocus spellcheck="true">It repeats.</textarea>' in page.text
    token, aid = csrf_from(page.text), assignment_id(page.text)
    done = htmx_post(
        client, "/rate/wr/demonstrations", token, {"assignment_id": aid, "text": "It calls itself."}
    )
    assert done.status_code == 200
    undone = htmx_post(client, "/rate/wr/writing/undo", token, {})
    assert "withdrawn" in undone.text and ">It calls itself.</textarea>" in undone.text
    assert _count(app, Demonstration) == 0
    nothing = htmx_post(client, "/rate/wr/writing/undo", token, {})
    assert "Nothing to undo" in nothing.text


def test_skip_moves_on(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, kinds=("write", "improve"))
    login(client, "rita")
    page = client.get("/rate/wr")
    token, first = csrf_from(page.text), assignment_id(page.text)
    after = htmx_post(client, "/rate/wr/writing/skip", token, {"assignment_id": first})
    assert after.status_code == 200 and assignment_id(after.text) != first
    last = htmx_post(client, "/rate/wr/writing/skip", token, {"assignment_id": assignment_id(after.text)})
    assert 'data-testid="empty"' in last.text


def test_review_needs_verdict_and_score_and_never_ones_own(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, kinds=("write", "review"))
    login(client, "rita")
    page = client.get("/rate/wr")
    token = csrf_from(page.text)
    htmx_post(
        client, "/rate/wr/demonstrations", token, {"assignment_id": assignment_id(page.text), "text": "Mine."}
    )
    mine = client.get("/rate/wr")
    assert 'id="review-form"' not in mine.text, "nobody reviews their own"
    with app.state.sessionmaker() as session:
        demo_id = session.scalars(select(Demonstration.id)).one()
    refused = htmx_post(
        client, "/rate/wr/reviews", token, {"demonstration_id": demo_id, "verdict": "accept", "score": 5}
    )
    assert refused.status_code == 404 and "Nobody reviews their own" in refused.text
    client.cookies.clear()
    login(client, "sam")
    page = client.get("/rate/wr")
    assert 'id="review-form"' in page.text and "Mine." in page.text
    assert 'value="harmful" data-key="q">' in page.text
    token = csrf_from(page.text)
    no_score = htmx_post(
        client, "/rate/wr/reviews", token, {"demonstration_id": demo_id, "verdict": "reject", "note": "thin"}
    )
    assert no_score.status_code == 422 and "Give a quality score from 1 to 5" in no_score.text
    assert 'value="reject" data-key="r" checked' in no_score.text and ">thin</textarea>" in no_score.text
    done = htmx_post(
        client, "/rate/wr/reviews", token,
        {"demonstration_id": demo_id, "verdict": "accept", "score": 4, "flags": "harmful", "note": "ok"},
    )  # fmt: skip
    assert done.status_code == 200
    with app.state.sessionmaker() as session:
        review = session.scalars(select(DemonstrationReview)).one()
        assert (review.accepted, review.score, review.flags, review.note) == (True, 4, ["harmful"], "ok")
        assert session.scalars(select(Demonstration.review_status)).one() == "accepted"


def test_roles_csrf_and_expired_session(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rex", Role.researcher)
    login(client, "rita")
    page = client.get("/rate/wr")
    token, aid = csrf_from(page.text), assignment_id(page.text)
    no_token = client.post("/rate/wr/drafts", data={"assignment_id": aid, "text": "x"})
    assert no_token.status_code == 403
    saved = client.post(
        "/rate/wr/drafts", data={"assignment_id": aid, "text": "x"}, headers={"X-CSRF-Token": token}
    )
    assert saved.status_code == 200
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = client.post(
        "/rate/wr/demonstrations", data={"assignment_id": aid, "text": "x"},
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/rate/wr", "X-CSRF-Token": token},
    )  # fmt: skip
    assert expired.status_code == 401 and expired.headers["HX-Redirect"] == "/login?next=/rate/wr"
    login(client, "rex")
    researcher = client.get("/rate/wr", follow_redirects=False)
    assert researcher.status_code == 403
    assert _count(app, Demonstration) == 0


def test_admin_sets_the_mix_member_kinds_and_prompts_for_writing(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_user(session, "wendy", Role.rater)
    login(client, "ada")
    form = client.get("/admin/projects/new")
    assert 'name="mix_write"' in form.text and "Write a response" in form.text
    token = csrf_from(form.text)
    fields = {"slug": "mixed", "name": "Mixed", "csrf_token": token, "mix_compare": "", "mix_write": "0"}
    empty = client.post("/admin/projects", data=fields)
    assert empty.status_code == 422 and "give at least one task kind a weight above 0" in empty.text
    words = client.post(
        "/admin/projects", data=fields | {"mix_write": "1", "min_words": "9", "max_words": "3"}
    )
    assert words.status_code == 422 and "max_words (3) must be at least min_words (9)" in words.text
    nan = client.post("/admin/projects", data=fields | {"mix_write": "nan"})
    assert nan.status_code == 422 and "must be a finite number" in nan.text
    made = client.post(
        "/admin/projects",
        data=fields | {"mix_compare": "70", "mix_write": "30", "writing_overlap": "2", "review_overlap": "2",
                       "min_words": "20", "max_words": "400", "max_answer_chars": "8000"},
        follow_redirects=False,
    )  # fmt: skip
    assert made.status_code == 303, made.text
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "mixed")).one()
        assert project.task_mix == {"compare": 70.0, "write": 30.0}
        assert (project.writing_overlap, project.review_overlap, project.min_words) == (2, 2, 20)
        assert (project.max_words, project.max_answer_chars) == (400, 8000)
    page = client.get("/admin/projects/mixed")
    assert 'name="mix_write" inputmode="decimal" maxlength="12" value="30"' in page.text

    typo = client.post(
        "/admin/projects/mixed/members",
        data={"usernames": "wendy", "task_kinds": "wirte", "csrf_token": token},
    )
    assert typo.status_code == 422 and "unknown task kind &#39;wirte&#39;" in typo.text
    added = client.post(
        "/admin/projects/mixed/members",
        data={"usernames": "wendy", "task_kinds": ["write", "review"], "csrf_token": token},
    )
    assert added.status_code == 200 and "write, review" in added.text
    with app.state.sessionmaker() as session:
        assert session.scalars(select(ProjectMember.task_kinds)).one() == ["write", "review"]

    body = b'{"prompt": "Explain tides."}\n{"prompt": "Name a prime."}\n'
    imported = client.post(
        "/admin/projects/mixed/import",
        data={"kind": "prompts", "writing_tasks": "write", "csrf_token": token},
        files={"file": ("prompts.jsonl", body, "application/jsonl")},
    )
    assert imported.status_code == 200 and "2 writing tasks created" in imported.text
    with app.state.sessionmaker() as session:
        assert session.scalars(select(func.count()).select_from(WritingTask)).one() == 2


def test_pausing_and_membership_hold_for_writing_tasks(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, visibility=Visibility.members)
    with app.state.sessionmaker() as session, session.begin():
        project = session.scalars(select(Project)).one()
        rita = session.scalars(select(User).where(User.username == "rita")).one()
        membership.add_members(session, project, usernames=["rita"])
        rita.is_paused = True
    login(client, "rita")
    paused = client.get("/rate/wr")
    assert 'data-testid="paused"' in paused.text and 'id="write-form"' not in paused.text
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(User).values(is_paused=False))
    page = client.get("/rate/wr")
    assert 'id="write-form"' in page.text
    with app.state.sessionmaker() as session, session.begin():
        project = session.scalars(select(Project)).one()
        assert membership.remove_members(session, project, usernames=["rita"]) == 1
    with app.state.sessionmaker() as session:
        assert session.scalars(select(WritingAssignment.status)).one() == "lapsed"
    assert client.get("/rate/wr").status_code == 404, "a removed member no longer writes here"
