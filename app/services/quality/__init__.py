"""Label quality of a project: the report (agreement, gold, AI judges), per-rater statistics
and outlier rules, disputed comparisons and their resolution, and the agreement arithmetic."""

from app.services.quality.common import (
    SIGNED_VALUES,
    VALUE_LABELS,
    QualityError,
)
from app.services.quality.disputes import (
    DISPUTE_SCOPES,
    DISPUTE_STATUSES,
    DISPUTES_PER_PAGE,
    MAX_NOTE_CHARS,
    Dispute,
    DisputePage,
    DisputeScope,
    DisputeStatus,
    Vote,
    disputes,
    load_disputes,
    resolve,
)
from app.services.quality.raters import (
    AGREEMENT_GAP,
    AGREEMENT_MIN_PAIRS,
    GOLD_GAP,
    GOLD_MIN_JUDGMENTS,
    POSITION_MIN_VOTES,
    POSITION_P_VALUE,
    RaterQuality,
    rater_report,
    set_paused,
)
from app.services.quality.report import (
    AgreementSummary,
    JudgeQuality,
    ProjectQuality,
    agreement_summary,
    project_quality,
)

__all__ = [
    "AGREEMENT_GAP",
    "AGREEMENT_MIN_PAIRS",
    "DISPUTES_PER_PAGE",
    "DISPUTE_SCOPES",
    "DISPUTE_STATUSES",
    "GOLD_GAP",
    "GOLD_MIN_JUDGMENTS",
    "MAX_NOTE_CHARS",
    "POSITION_MIN_VOTES",
    "POSITION_P_VALUE",
    "SIGNED_VALUES",
    "VALUE_LABELS",
    "AgreementSummary",
    "Dispute",
    "DisputePage",
    "DisputeScope",
    "DisputeStatus",
    "JudgeQuality",
    "ProjectQuality",
    "QualityError",
    "RaterQuality",
    "Vote",
    "agreement_summary",
    "disputes",
    "load_disputes",
    "project_quality",
    "rater_report",
    "resolve",
    "set_paused",
]
