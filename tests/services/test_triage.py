"""AI triage with a hand-made judge: the pairs it is sure of skip the human queue, the audit share
is honoured exactly, nothing is labelled twice by the same source, the quality figures follow, and
training runs take the triaged labels only when asked."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import (
    Choice,
    Comparison,
    Judgment,
    JudgmentSource,
    Run,
    RunItem,
    RunKind,
    SelectionStrategy,
    TriageState,
)
from app.services import rating
from app.services.rating import JudgmentInput, choice_to_pick
from app.services.runs import create_run
from app.services.runs.judges import judge_identity
from app.services.runs.records import RunError
from app.services.triage import (
    AUDIT_PRIORITY,
    SCORED,
    TriageSettingsError,
    audit_count,
    confident,
    triage_report,
    update_triage_settings,
    verdict_margin,
    wilson_interval,
)
from app.services.triage.store import store_triage
from tests.utils.factories import make_model_version, make_pair, make_project, make_user

THRESHOLD = 2.0


def _lm_verdict(cid: int, d_ab: float, d_ba: float) -> dict:
    """What worker/training/judge.py's LM judge returns for log-odds d_ab and d_ba."""
    choice = "A" if d_ab > 0 and d_ba < 0 else "B" if d_ab < 0 and d_ba > 0 else "tie"
    return {"comparison_id": cid, "choice": choice, "strength": 0 if choice == "tie" else 1,
            "rationale": "", "provenance": {"logodds": {"ab": d_ab, "ba": d_ba}}}  # fmt: skip


def hand_made_judge(truth: dict[int, str], wrong: set[int]) -> list[dict]:
    """Per pair, by its position: a quarter answer by position (orders disagree), a quarter agree
    with a small margin (1 nat), half agree with a large one (3 nats); wrong on `wrong`."""
    verdicts = []
    for index, cid in enumerate(sorted(truth)):
        side = truth[cid] if cid not in wrong else ("B" if truth[cid] == "A" else "A")
        sign = 1 if side == "A" else -1
        if index % 4 == 0:
            verdicts.append(_lm_verdict(cid, 2.0, 2.0))  # "A" in both orders: position, not content
        elif index % 4 == 1:
            verdicts.append(_lm_verdict(cid, sign * 1.0, -sign * 1.5))
        else:
            verdicts.append(_lm_verdict(cid, sign * 3.0, -sign * 4.0))
    return verdicts


def test_margins_confidence_audit_count_and_wilson() -> None:
    assert verdict_margin(_lm_verdict(1, 3.0, -4.0)) == 3.0  # the smaller of the two orders
    assert verdict_margin(_lm_verdict(1, -5.0, 2.5)) == 2.5
    assert verdict_margin(_lm_verdict(1, 2.0, 2.0)) == 0.0  # the orders disagree: a tie
    rm = {"comparison_id": 1, "choice": "B", "provenance": {"scores": [0.5, 3.0]}}
    assert verdict_margin(rm) == 2.5
    assert confident(rm, 2.0) and not confident(rm, 2.5)  # strictly above the threshold
    with pytest.raises(ValueError, match="provenance"):
        verdict_margin({"choice": "A", "provenance": {}})
    # the share is kept over the history: 10% of 25 confident pairs is 3 (2.5 rounded half up),
    # then of 40 it is 4, so the second run audits 1
    assert audit_count(0.1, new=25, earlier_confident=0, earlier_audited=0) == 3
    assert audit_count(0.1, new=15, earlier_confident=25, earlier_audited=3) == 1
    assert audit_count(0.1, new=5, earlier_confident=20, earlier_audited=2) == 1  # 2.5 -> 3
    assert audit_count(0.0, new=7, earlier_confident=3, earlier_audited=1) == 0
    assert audit_count(1.0, new=7, earlier_confident=3, earlier_audited=3) == 7
    # Wilson's interval, against values worked out by hand (Agresti & Coull, 1998)
    low, high = wilson_interval(8, 10)
    assert math.isclose(low, 0.4902, abs_tol=1e-4) and math.isclose(high, 0.9433, abs_tol=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.2775, abs_tol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _setup(session: Session, n_pairs: int = 40, audit_share: float = 0.25):  # type: ignore[no-untyped-def]
    project = make_project(session, "triage", overlap=2)
    raters = [make_user(session, f"rater{i}") for i in range(3)]
    truth: dict[int, str] = {}
    for i in range(n_pairs):
        side = "A" if i % 3 else "B"
        good, bad = f"good answer {i}", f"bad answer {i}"
        pair = make_pair(session, project, f"question {i}", *((good, bad) if side == "A" else (bad, good)))
        truth[pair.id] = side
    judge = make_model_version(session, "judge-lm", project=project)
    update_triage_settings(
        session, project=project, model_id=judge.id, margin=THRESHOLD, audit_share=audit_share
    )
    return project, raters, truth, judge


def _triage(session: Session, project, verdicts_for) -> tuple[Run, dict]:  # type: ignore[no-untyped-def]
    run = create_run(session, project=project, kind=RunKind.triage, config={})
    ids = list(session.scalars(select(RunItem.item_id).where(RunItem.run_id == run.id)))
    identity = judge_identity(
        session, project=project, model_id=run.config["judge_model_id"], rubric_override=None
    )
    summary = store_triage(
        session, run=run, context={"judge": identity.__dict__}, outcome={"verdicts": verdicts_for(ids)}
    )
    session.flush()
    return run, summary


def _drain(session: Session, project, raters, truth) -> Counter[int]:  # type: ignore[no-untyped-def]
    """Every rater takes pairs until none is left for them, voting the truth; pairs served."""
    served: Counter[int] = Counter()
    for rater in raters:
        while (assignment := rating.claim_next(session, project=project, rater_id=rater.id)) is not None:
            served[assignment.comparison_id] += 1
            choice = Choice(truth[assignment.comparison_id])
            pick = choice_to_pick(choice, 1, a_on_left=assignment.a_on_left)
            rating.submit_judgment(session, project=project, rater_id=rater.id,
                                   data=JudgmentInput(assignment_id=assignment.id, pick=pick))  # fmt: skip
    session.flush()
    return served


def test_confident_pairs_skip_humans_the_audit_share_holds_and_nothing_is_labelled_twice(
    session: Session,
) -> None:
    project, raters, truth, _ = _setup(session)
    ordered = sorted(truth)
    wrong = {ordered[2], ordered[3]}  # the judge is sure and wrong on two pairs
    # a rater holds one pair when the run is created: it is never a candidate
    held = rating.claim_next(session, project=project, rater_id=raters[0].id)
    assert held is not None
    # ... and another rater claims one after the run froze its pairs, before it stores: it stays theirs
    grabbed: list[int] = []

    def verdicts(ids: list[int]) -> list[dict]:
        assert held.comparison_id not in ids
        # the held pair has a second slot: of two more raters' claims, at least one is a frozen pair
        for rater in raters[1:]:
            assignment = rating.claim_next(session, project=project, rater_id=rater.id)
            assert assignment is not None
            if assignment.comparison_id in ids:
                grabbed.append(assignment.comparison_id)
        assert grabbed
        return [v for v in hand_made_judge(truth, wrong) if v["comparison_id"] in ids]

    run, summary = _triage(session, project, verdicts)
    states = dict(session.execute(select(Comparison.id, Comparison.triage)).all())
    assert states[held.comparison_id] == TriageState.untriaged
    assert all(states[cid] == TriageState.untriaged for cid in grabbed)
    judged = [
        v for v in hand_made_judge(truth, wrong) if v["comparison_id"] not in {held.comparison_id, *grabbed}
    ]
    sure = {v["comparison_id"] for v in judged if confident(v, THRESHOLD)}
    assert len(sure) >= 15
    by_state = Counter(states[cid] for cid in truth)
    assert by_state[TriageState.judge] + by_state[TriageState.audit] == len(sure)
    assert by_state[TriageState.audit] == math.floor(0.25 * len(sure) + 0.5)  # the share, exactly
    assert {cid for cid in sure} == {
        c for c, s in states.items() if s in (TriageState.judge, TriageState.audit)
    }
    assert by_state[TriageState.human] == len(judged) - len(sure)
    assert summary["to_judge"] == by_state[TriageState.judge] and summary["busy"] == len(grabbed)
    # the audited pairs come first in the uncertainty order, and score runs leave them alone
    priority = dict(session.execute(select(Comparison.id, Comparison.priority)).all())
    assert all((priority[c] == AUDIT_PRIORITY) == (s == TriageState.audit) for c, s in states.items())
    scored = set(session.scalars(select(Comparison.id).where(SCORED)))
    assert scored == {c for c, s in states.items() if s in (TriageState.untriaged, TriageState.human)}
    assert summary["human_votes_saved"] == 2 * by_state[TriageState.judge]

    # the raters finish the queue: a pair the judge took is never served; every other pair is,
    # to `overlap` raters
    served = _drain(session, project, raters, truth)
    for cid, state in states.items():
        if state == TriageState.judge:
            assert served[cid] == 0, f"pair {cid} was triaged to the judge and still served"
        else:
            humans = session.scalar(
                select(func.count()).where(
                    Judgment.comparison_id == cid, Judgment.source == JudgmentSource.human
                )
            )
            assert humans == 2, f"pair {cid} ({state}) has {humans} human votes"
    # nothing labelled twice by the same source: one AI label per judged pair, never a human one
    # on a pair the judge took, one vote per rater
    per_source = Counter(
        session.execute(select(Judgment.comparison_id, Judgment.source, Judgment.rater_id)).all()
    )
    assert max(per_source.values()) == 1
    ai = Counter(session.scalars(select(Judgment.comparison_id).where(Judgment.source == JudgmentSource.ai)))
    assert set(ai) == {v["comparison_id"] for v in judged} and max(ai.values()) == 1
    provenance = dict(session.execute(select(Judgment.comparison_id, Judgment.provenance).where(
        Judgment.source == JudgmentSource.ai)).all())  # fmt: skip
    assert all(provenance[cid]["triage"] == states[cid].value for cid in ai)

    # the quality figures: the judge's accuracy on the audited pairs, with Wilson's interval
    report = triage_report(session, project)
    audited = [cid for cid, s in states.items() if s == TriageState.audit]
    agree = sum(cid not in wrong for cid in audited)
    assert (report.audited, report.audit_agree, report.audit_pending) == (len(audited), agree, 0)
    assert report.interval == wilson_interval(agree, len(audited))
    assert report.human_votes_saved == 2 * by_state[TriageState.judge] and report.judge_name == "judge-lm"

    # nothing is left to triage now: every pair has votes or a decision
    with pytest.raises(RunError, match="no open pair to triage"):
        create_run(session, project=project, kind=RunKind.triage, config={})


def test_training_takes_triaged_labels_only_when_asked(session: Session) -> None:
    project, raters, truth, _ = _setup(session, n_pairs=24, audit_share=0.5)
    _triage(
        session, project, lambda ids: [v for v in hand_made_judge(truth, set()) if v["comparison_id"] in ids]
    )
    _drain(session, project, raters, truth)
    base = make_model_version(session, "base", project=project)
    states = dict(session.execute(select(Comparison.id, Comparison.triage)).all())

    def labelled(config: dict) -> dict[int, set[str]]:
        run = create_run(session, project=project, kind=RunKind.reward, config=config, base_model_id=base.id)
        ids = select(RunItem.item_id).where(RunItem.run_id == run.id)
        sources: dict[int, set[str]] = {}
        for cid, source in session.execute(
            select(Judgment.comparison_id, Judgment.source).where(Judgment.id.in_(ids))
        ):
            sources.setdefault(cid, set()).add(str(source))
        return sources

    human_only = labelled({"label_source": "human"})
    with_triage = labelled({"label_source": "human", "triaged": True})
    taken = {cid for cid, s in states.items() if s == TriageState.judge}
    assert taken and not taken & set(human_only)
    assert set(with_triage) == set(human_only) | taken
    # each pair keeps one source: the judge's label on the pairs it took, humans' on the rest
    assert all(with_triage[cid] == ({"ai"} if cid in taken else {"human"}) for cid in with_triage)


def test_settings_are_checked(session: Session) -> None:
    project = make_project(session, "settings")
    other = make_project(session, "other")
    foreign = make_model_version(session, "theirs", project=other)
    with pytest.raises(TriageSettingsError, match="triage_model_id"):
        update_triage_settings(session, project=project, model_id=foreign.id, margin=1.0, audit_share=0.1)
    with pytest.raises(TriageSettingsError, match="triage_audit_share"):
        update_triage_settings(session, project=project, model_id=None, margin=1.0, audit_share=1.5)
    with pytest.raises(TriageSettingsError, match="triage_margin"):
        update_triage_settings(session, project=project, model_id=None, margin=float("nan"), audit_share=0.1)
    with pytest.raises(RunError, match="no triage judge"):
        create_run(session, project=project, kind=RunKind.triage, config={})


def test_audited_pairs_are_served_first_under_the_uncertainty_order(session: Session) -> None:
    project, raters, truth, _ = _setup(session, n_pairs=20, audit_share=0.25)
    project.selection_strategy = SelectionStrategy.uncertainty
    _triage(
        session, project, lambda ids: [v for v in hand_made_judge(truth, set()) if v["comparison_id"] in ids]
    )
    states = dict(session.execute(select(Comparison.id, Comparison.triage)).all())
    audited = {cid for cid, s in states.items() if s == TriageState.audit}
    assert audited
    # a score run's priorities on the other open pairs: all below the audit's
    session.execute(update(Comparison).where(SCORED).values(priority=0.99))
    served = []
    for _ in audited:
        assignment = rating.claim_next(session, project=project, rater_id=raters[0].id)
        assert assignment is not None
        served.append(assignment.comparison_id)
        pick = choice_to_pick(Choice(truth[assignment.comparison_id]), 1, a_on_left=assignment.a_on_left)
        rating.submit_judgment(session, project=project, rater_id=raters[0].id,
                               data=JudgmentInput(assignment_id=assignment.id, pick=pick))  # fmt: skip
    assert set(served) == audited
