"""What a triage run stores: the judge's label on every pair it triaged, and what triage decided
for each pair, taken under the pairs' row locks so that no rater is given a pair at the moment it
leaves the queue.

A pair is triaged only while no person holds it: a regular pair, untriaged, with no human
judgment and no active assignment (a lease, even an expired one its rater may renew). The rows
are locked first (FOR UPDATE, in id order) and eligibility is read again in a fresh statement,
as the claim re-counts its slots: a rater's claim either committed before (the pair is then
theirs and stays with humans) or sees the new state (PostgreSQL re-checks the claim's conditions
on the updated row). On SQLite every transaction is IMMEDIATE, which serialises the two.

The judge's labels go through `store_judgments` (one per pair and judge, ON CONFLICT DO NOTHING),
with `triage` (the state) and `triage_margin` added to each label's provenance. A pair whose
stored label by this judge says something other than the run's verdict (an earlier run of the
same judge with other margins) stays with humans. Audited pairs get `AUDIT_PRIORITY`, so that
the uncertainty order serves them first (queue.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Comparison, Judgment, Project, Run, TriageState
from app.services.runs.judges import JudgeIdentity, judge_user
from app.services.runs.records import add_log
from app.services.runs.results import store_judgments
from app.services.triage.queue import AUDIT_PRIORITY, triage_candidates_query
from app.services.triage.rules import audit_count, confident, verdict_margin

LOCK_BATCH = 1000


def _eligible(session: Session, project: Project, ids: list[int]) -> set[int]:
    out: set[int] = set()
    for start in range(0, len(ids), LOCK_BATCH):
        batch = ids[start : start + LOCK_BATCH]
        session.execute(
            select(Comparison.id).where(Comparison.id.in_(batch)).order_by(Comparison.id).with_for_update()
        ).all()
        out.update(session.scalars(triage_candidates_query(project).where(Comparison.id.in_(batch))))
    return out


def _history(session: Session, project: Project) -> tuple[int, int]:
    """Confident pairs triaged so far (to the judge or to the audit), and those audited."""
    counts = dict(
        session.execute(
            select(Comparison.triage, func.count())
            .where(
                Comparison.project_id == project.id,
                Comparison.triage.in_([TriageState.judge, TriageState.audit]),
            )
            .group_by(Comparison.triage)
        ).all()
    )
    judged, audited = counts.get(TriageState.judge, 0), counts.get(TriageState.audit, 0)
    return judged + audited, audited


def store_triage(
    session: Session, *, run: Run, context: Mapping[str, Any], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Store a triage run's verdicts and decide each pair (module docstring); the run's summary."""
    project = session.get(Project, run.project_id)
    if project is None:
        raise LookupError("the run's project no longer exists")
    threshold, share = float(run.config["margin"]), float(run.config["audit_share"])
    verdicts = [dict(v) for v in outcome["verdicts"]]
    eligible = _eligible(session, project, sorted(v["comparison_id"] for v in verdicts))
    sure = sorted(
        v["comparison_id"] for v in verdicts if v["comparison_id"] in eligible and confident(v, threshold)
    )
    earlier_confident, earlier_audited = _history(session, project)
    n_audit = audit_count(
        share, new=len(sure), earlier_confident=earlier_confident, earlier_audited=earlier_audited
    )
    audited = set(random.Random(f"triage:{run.id}").sample(sure, n_audit))
    state: dict[int, TriageState] = {}
    for v in verdicts:
        cid = v["comparison_id"]
        if cid not in eligible:
            continue
        if cid in audited:
            state[cid] = TriageState.audit
        elif cid in sure:
            state[cid] = TriageState.judge
        else:
            state[cid] = TriageState.human
        v["provenance"] = {
            **dict(v.get("provenance") or {}),
            "triage": state[cid].value,
            "triage_margin": verdict_margin(v),
        }
    # Only the pairs triaged get the judge's label: a pair a rater took meanwhile is the humans'.
    decided = [v for v in verdicts if v["comparison_id"] in state]
    summary = store_judgments(session, run=run, context=context, outcome={"verdicts": decided})
    user = judge_user(session, JudgeIdentity(**context["judge"]).username)
    # The label that stands is the judge's stored one: where it differs from this run's verdict,
    # the pair goes to humans.
    choice = {v["comparison_id"]: v["choice"] for v in verdicts}
    taken = [cid for cid, s in state.items() if s == TriageState.judge]
    for start in range(0, len(taken), LOCK_BATCH):
        rows = session.execute(
            select(Judgment.comparison_id, Judgment.choice).where(
                Judgment.comparison_id.in_(taken[start : start + LOCK_BATCH]), Judgment.rater_id == user.id
            )
        ).all()
        for cid, stored in rows:
            if str(stored) != choice[cid]:
                state[cid] = TriageState.human
    by_state: dict[TriageState, list[int]] = {}
    for cid, s in state.items():
        by_state.setdefault(s, []).append(cid)
    for s, ids in by_state.items():
        values: dict[str, Any] = {"triage": s, "triage_judge_id": user.id}
        if s == TriageState.audit:
            values["priority"] = AUDIT_PRIORITY  # first under the uncertainty order (queue.py)
        for start in range(0, len(ids), LOCK_BATCH):
            session.execute(
                update(Comparison).where(Comparison.id.in_(ids[start : start + LOCK_BATCH])).values(**values)
            )
    counts = Counter(s.value for s in state.values())
    summary |= {
        "triage_margin": threshold,
        "audit_share": share,
        "triaged": len(state),
        "to_judge": counts["judge"],
        "to_audit": counts["audit"],
        "to_humans": counts["human"],
        "busy": len(verdicts) - len(state),
        "human_votes_saved": counts["judge"] * project.overlap,
    }
    add_log(
        session,
        run.id,
        f"triage: {counts['judge']} pairs labelled by the judge, {counts['audit']} sent to humans as "
        f"an audit, {counts['human']} left to humans (margin {threshold:g} not passed), "
        f"{len(verdicts) - len(state)} taken by raters meanwhile",
    )
    return summary
