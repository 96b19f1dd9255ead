"""Rating: assignment of pairs to raters (claims, leases, the gold draw, what is left) and the
judgments they return (stored once, adaptive overlap, skip, undo); common holds what both share."""

from app.services.rating.assignment import (
    MAX_CLAIM_ATTEMPTS,
    REMAINING_CAP,
    PairView,
    Progress,
    claim_next,
    current_lease,
    pair_view,
    progress,
)
from app.services.rating.common import (
    PICK_LABELS,
    SCALE_PICKS,
    InvalidJudgment,
    JudgmentInput,
    NotAMember,
    NotAssigned,
    PairFilled,
    RatingError,
    max_overlap,
)
from app.services.rating.judgments import (
    MAX_RATIONALE_CHARS,
    MAX_TIME_SPENT_MS,
    choice_to_pick,
    pick_to_choice,
    skip,
    submit_judgment,
    undo_last,
    votes_split,
)

__all__ = [
    "MAX_CLAIM_ATTEMPTS",
    "MAX_RATIONALE_CHARS",
    "MAX_TIME_SPENT_MS",
    "PICK_LABELS",
    "REMAINING_CAP",
    "SCALE_PICKS",
    "InvalidJudgment",
    "JudgmentInput",
    "NotAMember",
    "NotAssigned",
    "PairFilled",
    "PairView",
    "Progress",
    "RatingError",
    "choice_to_pick",
    "claim_next",
    "current_lease",
    "max_overlap",
    "pair_view",
    "pick_to_choice",
    "progress",
    "skip",
    "submit_judgment",
    "undo_last",
    "votes_split",
]
