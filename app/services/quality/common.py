"""What the label-quality reports share: the vote columns and counts in SQL, vote shares.

Reports read the tallies the database keeps of the judgments (`app.models.tallies`: per
comparison, per rater, per rater and hour, per rater and flag, per pair of raters) and a few
narrow columns, so their cost follows the number of raters and comparisons, not of judgments.
The arithmetic lives in `app.services.quality.agreement`.

**Whose votes.** Human statistics use the judgments with ``source = human``. AI judgments
(``source = ai``, owned by a ``judge`` user, who never logs in) are never counted as a human
rater; they appear only in the judge table, beside the human-human agreement.

**Definitions.**

* *Agreement* (percent): the share of agreeing pairs among all pairs of human votes on the same
  comparison, on the choice (A, B or tie). A rater's agreement is over the pairs that include
  one of their votes and another rater's vote on the same comparison.
* *Krippendorff's alpha*: ordinal over the signed strength (-2..2: +strength for A, -strength
  for B, 0 for a tie), and nominal over A/B/tie; units are comparisons with two or more votes.
* *Gold accuracy*: the share of judgments on gold pairs (``kind = gold`` with a known answer)
  whose choice equals the known answer (a gold tie must be answered with a tie).
* *Left share*: of the non-tie judgments, those that picked the completion shown on the left
  (A chosen with A on the left, or B chosen with A on the right). Position bias is tested with
  an exact two-sided binomial test against 0.5.
* *Throughput*: judgments per active hour, where active hours are the distinct clock hours (UTC)
  in which the rater submitted at least one judgment.
* *Median time*: the median ``time_spent_ms`` of the rater's judgments.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func
from sqlalchemy.orm import Session

import app.services.quality.agreement as agreement
from app.db import set_local_work_mem
from app.models import Comparison, Judgment, JudgmentSource

SIGNED_VALUES: tuple[int, ...] = (-2, -1, 0, 1, 2)
NOMINAL: dict[Hashable, Hashable] = {v: agreement.nominal_of_signed(v) for v in SIGNED_VALUES}
VALUE_LABELS = {-2: "B much better", -1: "B better", 0: "tie", 1: "A better", 2: "A much better"}

_j = Judgment.__table__.c
_c = Comparison.__table__.c
_HUMAN = _j.source == JudgmentSource.human.value
_AI = _j.source == JudgmentSource.ai.value


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class _VoteShares:
    """Shares of a set of human votes (a rater's or a project's), from its counts."""

    if TYPE_CHECKING:  # a field of a rater, a property of a project (its human judgments)

        @property
        def judgments(self) -> int: ...

    non_tie: int
    left: int
    ties: int
    both_bad: int
    flagged: int

    @property
    def tie_rate(self) -> float | None:
        return _rate(self.ties, self.judgments)

    @property
    def both_bad_rate(self) -> float | None:
        return _rate(self.both_bad, self.judgments)

    @property
    def flag_rate(self) -> float | None:
        return _rate(self.flagged, self.judgments)

    @property
    def left_share(self) -> float | None:
        return _rate(self.left, self.non_tie)

    @functools.cached_property
    def left_p_value(self) -> float | None:
        # An exact test over every count of the tail: computed once per report row (the page,
        # the outlier rule and its reason all read it).
        return agreement.binomial_test(self.left, self.non_tie) if self.non_tie else None


# Per-comparison aggregates of a large project outgrow PostgreSQL's default work_mem (4 MB) and
# spill to disk; these read-only reports raise it for their own transaction only.
ANALYTICS_WORK_MEM = "64MB"


def _analytics(session: Session) -> None:
    set_local_work_mem(session, ANALYTICS_WORK_MEM)


class QualityError(Exception):
    """An admin action on label quality (resolving a comparison, pausing a rater) that cannot be
    done; the message says why, for the admin."""
