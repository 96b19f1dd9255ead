"""A preference run's log says what its labels became, and warns when ties and drops leave it
little data to train on."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, RunKind
from app.services import runs
from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user
from worker.data import preference_pairs


def _run_note(session: Session, choices: list[str], tie_rule: str = "drop") -> str:
    project = make_project(session, "ties")
    rater = make_user(session, "r")
    for i, choice in enumerate(choices):
        comparison = make_comparison(
            session, project, [{"role": "user", "content": f"q{i}"}], f"a{i}", f"b{i}"
        )
        make_human_judgment(session, comparison, rater, choice)
    base = ModelVersion(name="base", kind=ModelKind.policy, uri="/m/base")
    session.add(base)
    session.flush()
    run = runs.create_run(
        session, project=project, kind=RunKind.reward, base_model_id=base.id, config={"tie_rule": tie_rule}
    )
    return preference_pairs(session, run, runs.snapshot_ids(session, run.id)).note


def test_a_run_warns_when_ties_leave_little_data(session: Session) -> None:
    note = _run_note(session, ["tie", "tie", "tie", "A", "B"])
    assert note.startswith("2 pairs from 5 judgments on 5 comparisons; 3 comparisons gave no pair")
    assert "Warning: only 2 of 5 labelled comparisons (40%) became training pairs" in note


def test_no_warning_when_most_labels_train(session: Session) -> None:
    note = _run_note(session, ["tie", "A", "B", "A"])
    assert "1 comparisons gave no pair" in note and "Warning" not in note


def test_a_tie_rule_that_keeps_ties_trains_on_them_and_says_so(session: Session) -> None:
    note = _run_note(session, ["tie", "tie", "tie", "A", "B"], tie_rule="half")
    assert note.startswith("5 pairs from 5 judgments on 5 comparisons")
    assert "3 of the pairs are ties, trained on by the tie rule" in note and "Warning" not in note
