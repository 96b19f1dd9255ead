"""The leaderboard and length-bias pages: figures, charts, empty states, escaping, access."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.models import Role, Run, RunKind
from tests.utils.factories import (
    make_comparison,
    make_model_version,
    make_project,
    make_user,
    make_versus_pair,
    make_vote,
)
from tests.utils.web import csrf_from, login

XSS = '<script>alert("x")</script>'


def _seed(app, *, votes: bool = True) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_user(session, "ada", Role.admin)
        rater = make_user(session, "rita")
        judge = make_user(session, "ai-judge:rm", Role.judge)
        old = make_model_version(session, "policy-v1", project=project)
        new = make_model_version(session, XSS, project=project, parent=old)
        rm = make_model_version(
            session,
            "rm-v1",
            kind="reward",
            project=project,
            metrics={
                "evaluation": {
                    "accuracy": 0.7125,
                    "length_pearson": 0.4213,
                    "length_spearman": 0.3877,
                    "run_id": 42,
                    "project_id": project.id,
                }
            },
        )
        rm_run = _evaluate_run(session, project, rm.id, {"model": "rm-v1", "accuracy": 0.7125, "n": 80})
        # the same policy evaluated twice, by two judges: both results stay listed
        for judge_name, win_rate in (("rm-v1", 0.625), (f"lm-judge {XSS}", 0.4375)):
            summary = {"model": XSS, "reference": "policy-v1", "judge": judge_name,
                       "win_rate": win_rate, "lc_win_rate": 0.5, "n": 16}  # fmt: skip
            _evaluate_run(session, project, new.id, summary)
        # an imported pair (no versions, no votes): prompts for a generate run to answer
        make_comparison(session, project, [{"role": "user", "content": "hello"}], "hi", "hey there")
        if votes:
            for k in range(12):
                text = {new.id: "n" * (100 + k), old.id: "m" * (50 + k)}  # the new version is longer
                a, b = (new, old) if k % 2 else (old, new)
                pair = make_versus_pair(session, project, f"q{k}", text[a.id], a, text[b.id], b)
                new_side = "A" if a is new else "B"
                human = new_side if k < 10 else ("B" if new_side == "A" else "A")
                make_vote(session, pair, rater, human)  # the new version wins 10 of 12
                make_vote(session, pair, judge, "B" if human == "A" else "A", source="ai")
        return {"project": project.id, "old": old.id, "new": new.id, "rm_run": rm_run}


def _evaluate_run(session, project, model_id: int, summary: dict) -> int:  # type: ignore[no-untyped-def]
    from app.models import RunStatus
    from app.models.types import utcnow

    run = Run(
        project_id=project.id, kind=RunKind.evaluate, status=RunStatus.succeeded,
        config={"model_id": model_id}, summary=summary, finished_at=utcnow(),
    )  # fmt: skip
    session.add(run)
    session.flush()
    return run.id


def test_leaderboard_page_ranks_and_escapes(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app)
    login(client, "ada")
    page = client.get("/admin/projects/proj/leaderboard")
    assert page.status_code == 200
    html = page.text
    assert XSS not in html and "&lt;script&gt;" in html
    table = html[html.index('data-testid="leaderboard"') :]
    table = table[: table.index("</table>")]
    names = re.findall(r"<td><strong>(.*?)</strong>", table)
    assert names == ["&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "policy-v1"]
    assert "10 / 0 / 2" in table and "2 / 0 / 10" in table
    assert "83.3%" in table  # raw win rate of the new version: 10 of 12
    assert html.count("<svg") >= 2  # the interval chart and the LC bar chart
    assert 'data-testid="matrix"' in html
    # evaluate-run figures of the reward model, with a link to the run
    assert "Accuracy on held-out judgments" in html and "0.713" in html
    assert f'href="/admin/runs/{ids["rm_run"]}"' in html
    # every evaluate run is listed, newest first: one policy, two judges, both figures kept
    evaluations = html[html.index('data-testid="evaluations"') :]
    evaluations = evaluations[: evaluations.index("</table>")]
    rows = re.findall(r'<tr data-run="(\d+)">(.*?)</tr>', evaluations, re.S)
    assert len(rows) == 3 and int(rows[-1][0]) == ids["rm_run"]
    assert "0.438" in rows[0][1] and "&lt;script&gt;" in rows[0][1] and "policy-v1" in rows[0][1]
    assert "0.625" in rows[1][1] and "rm-v1" in rows[1][1]
    assert "held-out human judgments" in rows[2][1]
    # AI votes go the other way: the old version leads
    ai = client.get("/admin/projects/proj/leaderboard?source=ai").text
    ai_table = ai[ai.index('data-testid="leaderboard"') :]
    assert re.findall(r"<td><strong>(.*?)</strong>", ai_table)[0] == "policy-v1"
    assert client.get("/admin/projects/proj/leaderboard?source=nope").status_code == 422
    assert client.get("/admin/projects/missing/leaderboard").status_code == 404
    assert ids["new"] != ids["old"]


def test_start_a_human_evaluation_launches_a_versus_run(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app, votes=False)
    login(client, "ada")
    html = client.get("/admin/projects/proj/leaderboard").text
    assert "No version-vs-version votes yet" in html
    form = html[html.index('data-testid="start-human-evaluation"') :]
    form = form[: form.index("</form>")]
    # the newest version is preselected against its parent
    assert re.search(rf'name="base_model_id".*?<option value="{ids["new"]}" selected', form, re.S)
    assert re.search(rf'name="versus_model_id".*?<option value="{ids["old"]}" selected', form, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    assert fields["kind"] == "generate" and fields["strategy"] == "versus" and fields["project"] == "proj"
    response = client.post(
        "/admin/runs",
        data={**fields, "base_model_id": ids["new"], "versus_model_id": ids["old"], "num_prompts": "8"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with app.state.sessionmaker() as session:
        run = session.scalars(select(Run).where(Run.kind == RunKind.generate)).one()
        assert run.kind == RunKind.generate and run.base_model_id == ids["new"]
        assert run.config["strategy"] == "versus" and run.config["versus_model_id"] == ids["old"]
        assert run.config["num_prompts"] == 8


def test_length_bias_page(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    login(client, "ada")
    page = client.get("/admin/projects/proj/length-bias")
    assert page.status_code == 200
    html = page.text
    assert XSS not in html and "&lt;script&gt;" in html
    # labels: the new version's completions are the longer ones and won 10 of 12
    assert 'data-testid="longer-wins">83.3%' in html
    assert 'data-testid="length-bins"' in html
    # the reward model's score-length correlation, from its evaluate run
    reward = html[html.index('data-testid="reward-length"') :]
    assert "rm-v1" in reward and "0.421" in reward and "0.388" in reward
    # policy versions: mean length per version, raw and LC win rate side by side
    versions = html[html.index('data-testid="version-lengths"') :]
    versions = versions[: versions.index("</table>")]
    assert "policy-v1" in versions and ">106<" in versions and ">56<" in versions  # mean lengths
    assert html.count("<svg") >= 3
    ai = client.get("/admin/projects/proj/length-bias?source=ai").text
    assert 'data-testid="longer-wins">16.7%' in ai


def test_empty_states_name_what_fills_them(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_project(session, "bare")
        make_user(session, "ada", Role.admin)
    login(client, "ada")
    board = client.get("/admin/projects/bare/leaderboard").text
    assert "No version-vs-version votes yet" in board and "Start a human evaluation" in board
    assert (
        'data-testid="evaluate-empty"' in board and "/admin/runs/new?kind=evaluate&amp;project=bare" in board
    )
    assert "the registry has 0" in board  # no policies: no launch form, but what to do instead
    length = client.get("/admin/projects/bare/length-bias").text
    for testid in ("labels-empty", "reward-empty", "versions-empty"):
        assert f'data-testid="{testid}"' in length
    assert "length_pearson" in length and "evaluate run" in length
    project_page = client.get("/admin/projects/bare").text
    assert 'href="/admin/projects/bare/leaderboard"' in project_page
    assert 'href="/admin/projects/bare/length-bias"' in project_page


def test_only_admins_see_the_pages(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app, votes=False)
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rosa", Role.researcher)
    for path in ("/admin/projects/proj/leaderboard", "/admin/projects/proj/length-bias"):
        anonymous = client.get(path, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    for username in ("rita", "rosa"):
        client.cookies.clear()
        login(client, username)
        for path in ("/admin/projects/proj/leaderboard", "/admin/projects/proj/length-bias"):
            assert client.get(path).status_code == 403
    client.cookies.clear()
    login(client, "ada")
    assert csrf_from(client.get("/admin/projects/proj/leaderboard").text)
