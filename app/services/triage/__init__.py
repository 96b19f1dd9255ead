"""AI triage: the project's judge labels the open pairs it is sure of, and those pairs skip the
human queue, except a share kept as an audit of the judge.

rules: how sure a verdict is (its margin, agreed in both orders), the audit draw, Wilson intervals;
queue: the pairs triage may take, the human queue's condition, the pairs score runs order (audited
  pairs are served first), the labels triage gave its judge;
store: what a triage run stores (the judge's labels and each pair's triage state, under lock;
imported as app.services.triage.store by the worker's table, since it writes through runs);
report: the judge's accuracy on the audited pairs and the human labels triage saved;
settings: the project's judge, margin and audit share.
"""

from app.services.triage.queue import (
    AUDIT_PRIORITY,
    IN_HUMAN_QUEUE,
    SCORED,
    triage_candidates_query,
    triaged_label_ids,
)
from app.services.triage.report import TriageReport, triage_report
from app.services.triage.rules import audit_count, confident, verdict_margin, wilson_interval
from app.services.triage.settings import TriageSettingsError, judge_choices, update_triage_settings

__all__ = [
    "AUDIT_PRIORITY",
    "IN_HUMAN_QUEUE",
    "SCORED",
    "TriageReport",
    "TriageSettingsError",
    "audit_count",
    "confident",
    "judge_choices",
    "triage_candidates_query",
    "triage_report",
    "triaged_label_ids",
    "update_triage_settings",
    "verdict_margin",
    "wilson_interval",
]
