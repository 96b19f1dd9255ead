"""The project page's label-selection section: the strategy, the open queue's uncertainty in
bins, and the learning curve of the project's reward versions (held-out accuracy by labels used)."""

from __future__ import annotations

from app.models import ModelKind, ModelVersion, Role, Run, RunKind, RunStatus, SelectionStrategy
from app.services.selection.dashboard import overview
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import login


def test_project_page_shows_the_selection_overview(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(
            session, "sel", overlap=1, selection_strategy=SelectionStrategy.mix, random_share=0.25
        )
        pairs = [make_pair(session, project, f"q{i}", f"a{i}", f"b{i}") for i in range(6)]
        for pair, uncertainty in zip(pairs, (0.05, 0.12, 0.18, 0.95, 1.0, None), strict=True):
            pair.uncertainty = uncertainty
        pairs[0].judgment_count = 1  # complete: not in the open queue
        for name, labels, accuracy in (("rm-2", 400, 0.81), ("rm-1", 100, 0.64), ("rm-x", 50, None)):
            metrics = {"evaluation": {"accuracy": accuracy}} if accuracy else {}
            version = ModelVersion(name=name, kind=ModelKind.reward, uri=f"/m/{name}", project_id=project.id,
                                   metrics=metrics)  # fmt: skip
            session.add(version)
            session.flush()
            session.add(Run(project_id=project.id, kind=RunKind.reward, status=RunStatus.succeeded,
                            output_model_id=version.id, snapshot_size=labels))  # fmt: skip
        make_user(session, "ada", Role.admin)
        session.flush()
        seen = overview(session, project)
        assert seen.open_pairs == 5 and seen.scored == 4
        assert seen.bins == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 falls in the top bin
        assert [(p.version, p.labels, p.accuracy) for p in seen.curve] == [
            ("rm-1", 100, 0.64),
            ("rm-2", 400, 0.81),
        ]

    login(client, "ada")
    page = client.get("/admin/projects/sel")
    assert page.status_code == 200
    text = page.text
    assert "Label selection" in text and "Mix</strong> strategy (25% random)" in text
    assert "<strong>5</strong> open pairs" in text and "<strong>4</strong> scored" in text
    assert 'aria-label="Open pairs by uncertainty (latest score run)"' in text
    assert 'aria-label="Learning curve: reward versions on held-out human judgments"' in text
    assert "<td>rm-1</td><td>100</td><td>0.640</td>" in text and "<td>rm-x</td>" not in text
