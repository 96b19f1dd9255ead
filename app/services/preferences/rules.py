"""The aggregation rules: how judgments become preference rows (prompt, chosen, rejected).

The exporter (services/exporting) and the trainers (reward model, DPO) read preference data
only through `preference_rows` (rows.py), so a dataset exported from the web page and the data
a run trained on follow the same rules, and every row path feeds its votes to the one `decide`
below. The rules, as the dataset card states them:

**Which judgments count (filters, applied before any aggregation).** The project's judgments,
optionally restricted to a list of judgment ids (a training snapshot), a date range
(``created_at``), a set of raters, a label source (``human``, ``ai`` or ``both``) and gold pairs
(``include``, ``exclude`` or ``only``). A judgment carrying any flag in ``exclude_flags`` is
dropped. A judgment marked *both bad* is dropped unless ``include_both_bad`` is set, in which
case it is an ordinary vote (its choice and strength count as given).

**Ties.** A tie vote (``choice = tie``, strength 0) prefers neither side. With ``ties="drop"``
(the default) it still counts as a vote: it lowers the winner's agreement, and a comparison whose
outcome is a tie is dropped. With ``ties="ignore"`` tie votes are removed before counting, as if
never cast. Either way no row has a tie as its label unless ``keep_ties`` is set (a reward run
whose ``tie_rule`` is ``half`` or ``davidson``): then a comparison whose outcome is a tie (no A/B
vote, or a gold tie) gives a row with ``tie = True`` (completion A as ``chosen``, margin 0,
agreement the share of tie votes), and in ``per_rater`` each tie vote gives such a row. A split
vote is still dropped.

**Aggregation.**

* ``majority`` (one row per comparison): the side with more votes wins. Equal non-zero counts
  are a *split* vote and the comparison is dropped; no A/B votes at all is a tie (dropped).
  ``margin = agreement x mean strength of the winning votes`` (0..2).
* ``mean_strength`` (one row per comparison): each vote scores ``+strength`` for A, ``-strength``
  for B, 0 for a tie; the sign of the mean picks the winner, a mean of exactly 0 is dropped
  (split or tie). ``margin = |mean score|`` (0..2): opposing votes cancel.
* ``per_rater`` (one row per judgment, raw labels): ``margin = strength`` (1 or 2);
  ``agreement`` is the share of the comparison's counted votes that made the same choice.

``votes`` is the number of counted votes on the comparison, ``agreement`` the share of them
that went to the winner (``per_rater``: to this judgment's choice), always in (0, 1]. Rows whose
agreement is below ``min_agreement`` are dropped.

**Gold pairs.** A gold pair has a known answer, and so has a pair an admin *resolved* on the
disagreement review page (row kind ``resolved``). In the aggregated modes that answer is the label
(a gold tie is dropped); ``agreement`` is then the share of votes that match it and
``margin = agreement x mean strength of the matching votes`` (0 when no vote matched). In
``per_rater`` mode gold pairs give their raters' judgments like any other pair.

**Rankings.** A ranking judgment's implied pairs (rankings.py) are votes like a pair's: each
implied pair is decided under the same rules, after every comparison's rows (ranking_rows.py).

Only comparisons with at least one counted vote give rows. What was dropped, and why, is counted
in a `PreferenceStats` passed as ``stats``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from app.models import ComparisonKind

Aggregation = Literal["majority", "mean_strength", "per_rater"]
LabelSource = Literal["human", "ai", "both", "edit", "human_edit", "all"]
Ties = Literal["drop", "ignore"]
Gold = Literal["include", "exclude", "only"]

AGGREGATIONS: tuple[str, ...] = ("majority", "mean_strength", "per_rater")
# The judgment sources each label_source reads: a rater's vote (human), an AI judge's (ai), and
# an improved completion beating the one it was edited from (edit, app/services/writing/).
LABEL_SOURCES: dict[str, tuple[str, ...]] = {
    "human": ("human",),
    "ai": ("ai",),
    "both": ("human", "ai"),
    "edit": ("edit",),
    "human_edit": ("human", "edit"),
    "all": ("human", "ai", "edit"),
}
# Row kinds: regular, gold (a known answer) and resolved (an admin settled a disputed pair).
RESOLVED = "resolved"
LABELLED_KINDS = frozenset({ComparisonKind.gold.value, RESOLVED})


@dataclass(frozen=True)
class RuleSet:
    """The rules that turn judgments into rows; `describe` renders them for the dataset card."""

    aggregation: Aggregation = "majority"
    ties: Ties = "drop"
    include_both_bad: bool = False
    min_agreement: float = 0.0
    keep_ties: bool = False  # a tie outcome gives a row flagged `tie` instead of being dropped

    def describe(self) -> list[str]:
        agg = {
            "majority": "majority vote, one row per comparison; margin = agreement x mean "
            "strength of the winning votes (0..2); an equal number of A and B votes (split) "
            "drops the comparison",
            "mean_strength": "mean signed strength, one row per comparison (+strength for A, "
            "-strength for B, 0 for a tie); margin = |mean| (0..2); a mean of 0 drops the "
            "comparison",
            "per_rater": "raw: one row per rater judgment; margin = the judgment's strength; "
            "agreement = share of the comparison's votes that made the same choice",
        }[self.aggregation]
        ties = {
            "drop": "tie votes count as votes for neither side (they lower agreement); "
            "comparisons whose outcome is a tie are dropped",
            "ignore": "tie votes are removed before counting, as if never cast",
        }[self.ties]
        both_bad = (
            "judgments marked both bad are kept as ordinary votes"
            if self.include_both_bad
            else "judgments marked both bad are dropped before counting"
        )
        lines = [
            f"Aggregation: {agg}.",
            f"Ties: {ties}; "
            + (
                "a tie outcome is kept as a row flagged tie (A as chosen, margin 0)."
                if self.keep_ties
                else "a tie is never a label."
            ),
            f"Both bad: {both_bad}.",
            "Gold and resolved pairs: in aggregated rows the known answer (or the admin's "
            "resolution) is the label and agreement is the share of votes that match it.",
        ]
        if self.min_agreement > 0:
            lines.append(f"Minimum agreement: rows with agreement below {self.min_agreement:g} are dropped.")
        return lines


@dataclass(frozen=True)
class JudgmentFilter:
    """Which judgments are read at all."""

    judgment_ids: frozenset[int] | None = None
    label_source: LabelSource = "human"
    date_from: datetime | None = None
    date_to: datetime | None = None
    rater_ids: frozenset[int] | None = None
    exclude_flags: frozenset[str] = frozenset()
    gold: Gold = "include"
    # Ranking judgments (ranking_rows.py): these ids only; unset, every one the other filters
    # pass, unless `judgment_ids` names a snapshot (then none).
    ranking_judgment_ids: frozenset[int] | None = None

    @property
    def ranking_ids_wanted(self) -> frozenset[int] | None:
        """The ranking judgment ids to read (None: all that pass the other filters)."""
        if self.ranking_judgment_ids is not None:
            return self.ranking_judgment_ids
        return frozenset() if self.judgment_ids is not None else None


@dataclass
class PreferenceStats:
    """Counts gathered while rows stream out.

    ``dropped`` counts why a judgment or a comparison gave no row: ``flagged`` (judgments
    carrying an excluded flag), ``both_bad`` (judgments marked both bad), ``tie_votes`` (tie
    votes ignored with ties=ignore, or without a row in per_rater), ``tie`` (comparisons whose
    outcome was a tie), ``split`` (comparisons with a split vote) and ``below_min_agreement``.
    """

    judgments_read: int = 0
    comparisons_read: int = 0
    rankings_read: int = 0
    implied_pairs: int = 0  # pairs of rankings given to `decide` (rankings.py)
    rows: int = 0
    ties_kept: int = 0  # rows flagged tie (keep_ties)
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Side:
    """One completion of a row, with the provenance of its text."""

    completion_id: int
    text: str
    model_name: str | None
    model_version_id: int | None
    sampling: dict[str, Any] | None
    sampling_json: str | None = None  # cached by the exporter: rows of a comparison share sides
    model_version_name: str | None = None  # the registered version that sampled it
    base_model_name: str | None = None  # the first version of that version's lineage

    @property
    def model(self) -> str:
        """Who wrote the text: the name given at import, else the base model of its version."""
        return self.model_name or self.base_model_name or ""


@dataclass(slots=True)
class Vote:
    judgment_id: int
    rater_id: int
    choice: str  # "A" | "B" | "tie"
    strength: int
    both_bad: bool
    flags: list[str]
    rationale: str
    time_spent_ms: int
    a_on_left: bool
    source: str
    created_at: datetime


@dataclass(slots=True)
class PreferenceRow:
    """One (prompt, chosen, rejected) example with where it came from.

    ``votes_used`` holds the judgments behind the row: one for ``per_rater`` rows, all the
    counted votes of the comparison otherwise (including tie and losing votes).
    """

    comparison_id: int
    prompt_id: int
    kind: str  # regular | gold | resolved
    gold_choice: str | None
    winner: str  # "A" | "B": which completion of the comparison is `chosen`
    margin: float
    agreement: float
    votes: int
    votes_used: list[Vote]
    # Filled in per batch, after the rows of the batch are decided.
    prompt_hash: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    chosen_side: Side | None = None
    rejected_side: Side | None = None
    # A row implied by a ranking (rankings.py): comparison_id is 0, these name the pair.
    ranking_id: int | None = None
    pair: tuple[int, int] | None = None  # positions (A, B) in the ranking's completion_ids
    completion_ids: tuple[int, int] | None = None  # (A, B)
    tie: bool = False  # keep_ties: a tie outcome, chosen/rejected are A/B in no order of merit

    @property
    def chosen(self) -> str:
        assert self.chosen_side is not None
        return self.chosen_side.text

    @property
    def rejected(self) -> str:
        assert self.rejected_side is not None
        return self.rejected_side.text

    @property
    def unit(self) -> tuple[int, int, int]:
        """What its votes were cast on: (comparison id, 0, 0), or (0, ranking id, pair index)."""
        if self.ranking_id is None or self.pair is None:
            return (self.comparison_id, 0, 0)
        return (0, self.ranking_id, self.pair[0] * 64 + self.pair[1])

    @property
    def judgment_ids(self) -> list[int]:
        return [vote.judgment_id for vote in self.votes_used]


def decide(
    votes: Sequence[Vote],
    *,
    rules: RuleSet,
    stats: PreferenceStats,
    comparison_id: int,
    prompt_id: int,
    kind: str = "regular",
    gold_choice: str | None = None,
) -> list[PreferenceRow]:
    """The rows one comparison's votes give under `rules` (texts not yet attached).

    Every row path (rows.py, postgres.py) calls this, once per comparison, with the votes left
    after the filters; drops are counted in ``stats``.
    """
    counted: list[Vote] = []
    for vote in votes:
        if vote.both_bad and not rules.include_both_bad:
            stats.dropped["both_bad"] += 1
        elif vote.choice == "tie" and rules.ties == "ignore":
            stats.dropped["tie_votes"] += 1
        else:
            counted.append(vote)
    n = len(counted)
    if n == 0:
        return []
    tally: dict[str, int] = {}
    for vote in counted:
        tally[vote.choice] = tally.get(vote.choice, 0) + 1
    minimum = rules.min_agreement

    if rules.aggregation == "per_rater":
        rows = []
        for vote in counted:
            choice = vote.choice
            if choice == "tie" and not rules.keep_ties:
                stats.dropped["tie_votes"] += 1
                continue
            agreement = round(tally[choice] / n, 6)
            if agreement < minimum:
                stats.dropped["below_min_agreement"] += 1
                continue
            tie = choice == "tie"
            stats.ties_kept += tie
            rows.append(
                PreferenceRow(
                    comparison_id,
                    prompt_id,
                    kind,
                    gold_choice,
                    "A" if tie else choice,
                    0.0 if tie else round(float(vote.strength), 6),
                    agreement,
                    n,
                    [vote],
                    tie=tie,
                )  # fmt: skip
            )
        return rows

    if kind in LABELLED_KINDS and gold_choice is not None:
        winner = str(gold_choice)
        if winner == "tie":
            return _tie_row(counted, rules, stats, comparison_id, prompt_id, kind, gold_choice)
        margin = _majority_margin(counted, winner, n)
    else:
        a, b = tally.get("A", 0), tally.get("B", 0)
        if rules.aggregation == "majority":
            if a == b:
                if a == 0 and rules.keep_ties:
                    return _tie_row(counted, rules, stats, comparison_id, prompt_id, kind, gold_choice)
                stats.dropped["split" if a else "tie"] += 1
                return []
            winner = "A" if a > b else "B"
            margin = _majority_margin(counted, winner, n)
        else:  # mean_strength
            score = sum(v.strength if v.choice == "A" else -v.strength for v in counted if v.choice != "tie")
            if score == 0:
                if not (a or b) and rules.keep_ties:
                    return _tie_row(counted, rules, stats, comparison_id, prompt_id, kind, gold_choice)
                stats.dropped["split" if a or b else "tie"] += 1
                return []
            winner = "A" if score > 0 else "B"
            margin = abs(score) / n
    agreement = round(tally.get(winner, 0) / n, 6)
    if agreement < minimum:
        stats.dropped["below_min_agreement"] += 1
        return []
    return [
        PreferenceRow(
            comparison_id, prompt_id, kind, gold_choice, winner, round(margin, 6), agreement, n, counted
        )
    ]


def _majority_margin(counted: Sequence[Vote], winner: str, n: int) -> float:
    strengths = [vote.strength for vote in counted if vote.choice == winner]
    if not strengths:
        return 0.0
    return (len(strengths) / n) * (sum(strengths) / len(strengths))


def _tie_row(
    counted: Sequence[Vote],
    rules: RuleSet,
    stats: PreferenceStats,
    comparison_id: int,
    prompt_id: int,
    kind: str,
    gold_choice: str | None,
) -> list[PreferenceRow]:
    """A tie outcome: a row flagged tie under keep_ties (A as chosen, margin 0), else dropped."""
    if not rules.keep_ties:
        stats.dropped["tie"] += 1
        return []
    n = len(counted)
    agreement = round(sum(vote.choice == "tie" for vote in counted) / n, 6)
    if agreement < rules.min_agreement:
        stats.dropped["below_min_agreement"] += 1
        return []
    stats.ties_kept += 1
    return [
        PreferenceRow(
            comparison_id, prompt_id, kind, gold_choice, "A", 0.0, agreement, n, list(counted), tie=True
        )
    ]
