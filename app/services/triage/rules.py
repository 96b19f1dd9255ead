"""The arithmetic of triage, free of the database.

* A verdict's margin: for an LM judge (asked in both orders, worker/training/judge.py), the
  smaller of the two log-odds in favour of the chosen response, min(d_ab, -d_ba) for A and
  min(-d_ab, d_ba) for B, in nats; 0 when the orders disagree (the verdict is then a tie). For a
  reward-model judge, which scores each side on its own so the order cannot matter, the absolute
  score difference. A tie has margin 0.
* Confident: not a tie, and the margin strictly above the project's threshold.
* The audit draw keeps the share exact over the project's history, not just in expectation: of
  the confident pairs so far (earlier runs included), round(share x total) are audited; a run
  audits the difference, drawn at random among its own confident pairs.
* Wilson's score interval for a proportion (the judge's accuracy on the audited pairs): unlike
  the normal approximation it stays inside [0, 1] and behaves at 0 and n successes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def verdict_margin(verdict: Mapping[str, Any]) -> float:
    """How sure a verdict is (module docstring); 0 for a tie or an order-dependent answer."""
    choice = verdict["choice"]
    if choice == "tie":
        return 0.0
    provenance = verdict.get("provenance") or {}
    logodds = provenance.get("logodds")
    if logodds is not None:
        d_ab, d_ba = float(logodds["ab"]), float(logodds["ba"])
        margin = min(d_ab, -d_ba) if choice == "A" else min(-d_ab, d_ba)
        return max(margin, 0.0)
    scores = provenance.get("scores")
    if scores is not None:
        return abs(float(scores[0]) - float(scores[1]))
    raise ValueError("a verdict without log-odds or scores in its provenance cannot be triaged")


def confident(verdict: Mapping[str, Any], threshold: float) -> bool:
    return verdict["choice"] != "tie" and verdict_margin(verdict) > threshold


def audit_count(share: float, *, new: int, earlier_confident: int, earlier_audited: int) -> int:
    """How many of a run's `new` confident pairs go to humans as the audit (module docstring)."""
    if not 0 <= share <= 1:
        raise ValueError(f"the audit share must be within [0, 1], not {share}")
    wanted = math.floor(share * (earlier_confident + new) + 0.5) - earlier_audited
    return min(max(wanted, 0), new)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval for successes / n (95% by default); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must be within 0..n ({n})")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
