"""Rankings on the researcher's and admin's pages: the rankings section of the label-quality page
(escaped), and the rankings export from the export page."""

from __future__ import annotations

import json
import re

from app.models import RankingJudgment, Role
from tests.utils.factories import make_project, make_user
from tests.utils.rankings import make_ranking
from tests.utils.web import login

EVIL = "<b>mallory</b>"


def _seed(app) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        raters = [make_user(session, "rita"), make_user(session, EVIL)]
        project = make_project(session, "ranked", overlap=2)
        for n in range(3):
            ranking = make_ranking(session, project, f"<script>x{n}</script> rank", ["one", "two", "three"])
            for rater, ranks, shown in ((raters[0], [1, 2, 3], [0, 1, 2]), (raters[1], [2, 1, 3], [2, 1, 0])):
                session.add(
                    RankingJudgment(ranking_id=ranking.id, rater_id=rater.id, project_id=project.id,
                                    ranks=ranks, display_order=shown, time_spent_ms=900)
                )  # fmt: skip
                ranking.judgment_count += 1


def test_the_quality_page_shows_ranking_agreement_and_first_shown_wins(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    assert login(client, "ada").status_code == 303
    page = client.get("/admin/projects/ranked/quality")
    assert page.status_code == 200
    section = page.text[page.text.index('id="rankings"') :]
    # per ranking: rita 1,2,3 and mallory 2,1,3 agree on 2 of the 3 implied pairs
    assert re.search(r"<strong>66\.7%</strong> agreement on implied pairs", section)
    assert re.search(r"<strong>0\.333</strong> mean Kendall", section)  # tau-b = 1/3
    # rita saw the stored order and ranked it as shown: the first shown wins 9 of 9; mallory saw
    # it reversed (three, two, one) and ranked two > one > three: 1 of 3 per ranking
    table = section.split('data-testid="ranking-raters"')[1].split("</table>")[0]
    first_shown = {}
    for row in table.split("<tr")[2:]:  # the header row aside
        name = re.search(r"<td>(.*?)</td>", row)
        shown = re.search(r'data-testid="first-shown">([\d.]+%) of (\d+)', row)
        assert name and shown
        first_shown[name.group(1)] = shown.groups()
    assert first_shown == {"rita": ("100.0%", "9"), "&lt;b&gt;mallory&lt;/b&gt;": ("33.3%", "9")}
    assert "<b>mallory" not in page.text


def test_the_export_page_previews_and_downloads_rankings(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    assert login(client, "ada").status_code == 303
    form = {"project": "ranked", "what": "rankings", "format": "jsonl", "aggregation": "majority",
            "ties": "drop", "min_agreement": "0", "test_fraction": "0", "layout": ""}  # fmt: skip
    preview = client.get("/export/preview", params=form)
    assert preview.status_code == 200, preview.text
    assert "Rankings: 3, implying 9 pairs" in preview.text
    download = client.get("/export/download", params=form | {"archive": "0"})
    assert download.status_code == 200
    rows = [json.loads(line) for line in download.text.splitlines()]
    assert len(rows) == 3 and rows[0]["completions"] == ["one", "two", "three"]
    assert rows[0]["ranks"] == [[1, 2, 3], [2, 1, 3]] and len(set(rows[0]["raters"])) == 2
    assert rows[0]["prompt"] == [{"role": "user", "content": "<script>x0</script> rank"}]
