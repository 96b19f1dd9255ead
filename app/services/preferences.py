"""Judgments -> preference rows (prompt, chosen, rejected): the aggregation rules, in one place.

The exporter (services/exporting.py) and the trainers (reward model, DPO) read preference data
only through `preference_rows`, so a dataset exported from the web page and the data a run
trained on follow the same rules. The rules, as the dataset card states them:

**Which judgments count (filters, applied before any aggregation).** The project's judgments,
optionally restricted to a list of judgment ids (a training snapshot), a date range
(``created_at``), a set of raters, a label source (``human``, ``ai`` or ``both``) and gold pairs
(``include``, ``exclude`` or ``only``). A judgment carrying any flag in ``exclude_flags`` is
dropped. A judgment marked *both bad* is dropped unless ``include_both_bad`` is set, in which
case it is an ordinary vote (its choice and strength count as given).

**Ties.** A tie vote (``choice = tie``, strength 0) prefers neither side. With ``ties="drop"``
(the default) it still counts as a vote: it lowers the winner's agreement, and a comparison whose
outcome is a tie is dropped. With ``ties="ignore"`` tie votes are removed before counting, as if
never cast. Either way no row ever has a tie as its label, and tie judgments produce no
``per_rater`` rows.

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

Only comparisons with at least one counted vote give rows. What was dropped, and why, is counted
in a `PreferenceStats` passed as ``stats``.

Streaming: judgments are read through a server-side cursor (``yield_per``) ordered by
comparison; texts are fetched afterwards, per batch of decided comparisons, once per comparison
(not once per judgment). Memory is bounded by the batch size, not by the number of judgments.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, String, case, func, select, type_coerce
from sqlalchemy.orm import Session, aliased

from app.models import Comparison, ComparisonKind, Completion, Judgment, Prompt, User

Aggregation = Literal["majority", "mean_strength", "per_rater"]
LabelSource = Literal["human", "ai", "both"]
Ties = Literal["drop", "ignore"]
Gold = Literal["include", "exclude", "only"]

AGGREGATIONS: tuple[str, ...] = ("majority", "mean_strength", "per_rater")
# Row kinds: regular, gold (a known answer) and resolved (an admin settled a disputed pair).
RESOLVED = "resolved"
LABELLED_KINDS = frozenset({ComparisonKind.gold.value, RESOLVED})
READ_BATCH = 5000  # judgments per round trip of the server-side cursor
TEXT_BATCH = 1000  # comparisons per text query (an IN list well under SQLite's limits)

# Why a judgment or a comparison gave no row (keys of PreferenceStats.dropped).
DROP_REASONS = {
    "flagged": "judgments carrying an excluded flag",
    "both_bad": "judgments marked both bad",
    "tie_votes": "tie votes ignored (ties=ignore) or without a row (per_rater)",
    "tie": "comparisons whose outcome was a tie",
    "split": "comparisons with a split vote",
    "below_min_agreement": "rows below the minimum agreement",
}


@dataclass(frozen=True)
class RuleSet:
    """The rules that turn judgments into rows; `describe` renders them for the dataset card."""

    aggregation: Aggregation = "majority"
    ties: Ties = "drop"
    include_both_bad: bool = False
    min_agreement: float = 0.0

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
            f"Ties: {ties}; a tie is never a label.",
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


@dataclass
class PreferenceStats:
    """Counts gathered while rows stream out."""

    judgments_read: int = 0
    comparisons_read: int = 0
    rows: int = 0
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

    @property
    def chosen(self) -> str:
        assert self.chosen_side is not None
        return self.chosen_side.text

    @property
    def rejected(self) -> str:
        assert self.rejected_side is not None
        return self.rejected_side.text

    @property
    def judgment_ids(self) -> list[int]:
        return [vote.judgment_id for vote in self.votes_used]


def preference_rows(
    session: Session,
    *,
    project_id: int,
    judgment_ids: Iterable[int] | None = None,
    aggregation: Aggregation = "majority",
    label_source: LabelSource = "human",
    include_both_bad: bool = False,
    min_agreement: float = 0.0,
    ties: Ties = "drop",
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    rater_ids: Iterable[int] | None = None,
    exclude_flags: Iterable[str] = (),
    gold: Gold = "include",
    stats: PreferenceStats | None = None,
) -> Iterator[PreferenceRow]:
    """Stream the preference rows of a project under the rules of the module docstring.

    Rows come ordered by comparison id (then judgment id for ``per_rater``). The session must
    stay open while the iterator is consumed.
    """
    rules = RuleSet(aggregation, ties, include_both_bad, min_agreement)
    selection = JudgmentFilter(
        judgment_ids=frozenset(judgment_ids) if judgment_ids is not None else None,
        label_source=label_source,
        date_from=date_from,
        date_to=date_to,
        rater_ids=frozenset(rater_ids) if rater_ids is not None else None,
        exclude_flags=frozenset(exclude_flags),
        gold=gold,
    )
    return iter_preference_rows(session, project_id=project_id, rules=rules, selection=selection, stats=stats)


def iter_preference_rows(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats | None = None,
) -> Iterator[PreferenceRow]:
    if rules.aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rules.aggregation!r}")
    if not 0.0 <= rules.min_agreement <= 1.0:
        raise ValueError("min_agreement must be between 0 and 1")
    stats = stats if stats is not None else PreferenceStats()
    if session.get_bind().dialect.name == "postgresql":
        yield from _iter_rows_postgresql(
            session, project_id=project_id, rules=rules, selection=selection, stats=stats
        )
        return
    query = _judgments_query(project_id, selection)
    result = session.execute(query.execution_options(yield_per=READ_BATCH))
    decided: list[PreferenceRow] = []
    wanted_ids = selection.judgment_ids
    excluded = selection.exclude_flags
    try:
        for comparison_id, records in itertools.groupby(result, key=lambda r: r[1]):
            stats.comparisons_read += 1
            votes: list[Vote] = []
            kind = gold_choice = None
            prompt_id = 0
            for r in records:
                if wanted_ids is not None and r[0] not in wanted_ids:
                    continue
                stats.judgments_read += 1
                flags = r[7] or []
                if excluded and not excluded.isdisjoint(flags):
                    stats.dropped["flagged"] += 1
                    continue
                votes.append(Vote(r[0], r[2], r[3], r[4], r[5], flags, *r[8:13]))
                kind, gold_choice, prompt_id = r[13], r[14], r[6]
            if votes:
                decided.extend(
                    decide(
                        votes,
                        rules=rules,
                        stats=stats,
                        comparison_id=comparison_id,
                        prompt_id=prompt_id,
                        kind=str(kind),
                        gold_choice=gold_choice,
                    )
                )
            if len(decided) >= TEXT_BATCH:
                yield from _with_texts(session, decided)
                stats.rows += len(decided)
                decided = []
        if decided:
            yield from _with_texts(session, decided)
            stats.rows += len(decided)
    finally:
        result.close()


def _judgments_query(project_id: int, selection: JudgmentFilter) -> Select[Any]:
    # Plain strings for the enum columns: no per-row enum construction on a million rows.
    j, c = Judgment.__table__.c, Comparison.__table__.c
    query = (
        select(
            j.id,
            j.comparison_id,
            j.rater_id,
            type_coerce(j.choice, String),
            j.strength,
            j.both_bad,
            c.prompt_id,
            j.flags,
            j.rationale,
            j.time_spent_ms,
            j.a_on_left,
            type_coerce(j.source, String),
            Judgment.created_at,
            # A pair an admin resolved is labelled by the resolution, like a gold pair.
            case((c.resolved_choice.is_not(None), RESOLVED), else_=type_coerce(c.kind, String)),
            type_coerce(func.coalesce(c.resolved_choice, c.gold_choice), String),
        )
        .select_from(Judgment.__table__.join(Comparison.__table__, c.id == j.comparison_id))
        .where(j.project_id == project_id)
        .order_by(j.comparison_id, j.id)
    )
    if selection.label_source != "both":
        query = query.where(j.source == selection.label_source)
    if selection.date_from is not None:
        query = query.where(Judgment.created_at >= selection.date_from)
    if selection.date_to is not None:
        query = query.where(Judgment.created_at < selection.date_to)
    if selection.rater_ids is not None:
        query = query.where(j.rater_id.in_(sorted(selection.rater_ids)))
    if selection.gold == "exclude":
        query = query.where(c.kind == ComparisonKind.regular.value)
    elif selection.gold == "only":
        query = query.where(c.kind == ComparisonKind.gold.value)
    if selection.judgment_ids is not None:
        # The exact set is checked in Python (it may hold a million ids); the range narrows the scan.
        if not selection.judgment_ids:
            return query.where(j.id < 0)
        query = query.where(j.id.between(min(selection.judgment_ids), max(selection.judgment_ids)))
    return query


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
    """The rows one comparison gives under `rules` (texts not yet attached)."""
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
    tally = Counter(vote.choice for vote in counted)

    def row(winner: str, margin: float, agreement: float, used: list[Vote]) -> PreferenceRow:
        return PreferenceRow(
            comparison_id=comparison_id,
            prompt_id=prompt_id,
            kind=kind,
            gold_choice=gold_choice,
            winner=winner,
            margin=round(margin, 6),
            agreement=round(agreement, 6),
            votes=n,
            votes_used=used,
        )

    def keep(candidate: PreferenceRow) -> bool:
        if candidate.agreement < rules.min_agreement:
            stats.dropped["below_min_agreement"] += 1
            return False
        return True

    if rules.aggregation == "per_rater":
        rows = []
        for vote in counted:
            if vote.choice == "tie":
                stats.dropped["tie_votes"] += 1
                continue
            candidate = row(vote.choice, float(vote.strength), tally[vote.choice] / n, [vote])
            if keep(candidate):
                rows.append(candidate)
        return rows

    if kind in LABELLED_KINDS and gold_choice is not None:
        winner = str(gold_choice)
        if winner == "tie":
            stats.dropped["tie"] += 1
            return []
        margin = _majority_margin(counted, winner, n)
    else:
        a, b = tally["A"], tally["B"]
        if rules.aggregation == "majority":
            if a == b:
                stats.dropped["split" if a else "tie"] += 1
                return []
            winner = "A" if a > b else "B"
            margin = _majority_margin(counted, winner, n)
        else:  # mean_strength
            score = sum(v.strength if v.choice == "A" else -v.strength for v in counted if v.choice != "tie")
            if score == 0:
                stats.dropped["split" if a or b else "tie"] += 1
                return []
            winner = "A" if score > 0 else "B"
            margin = abs(score) / n
    candidate = row(winner, margin, tally[winner] / n, counted)
    return [candidate] if keep(candidate) else []


def _majority_margin(counted: Sequence[Vote], winner: str, n: int) -> float:
    strengths = [vote.strength for vote in counted if vote.choice == winner]
    if not strengths:
        return 0.0
    return (len(strengths) / n) * (sum(strengths) / len(strengths))


def _with_texts(session: Session, rows: list[PreferenceRow]) -> Iterator[PreferenceRow]:
    """Attach prompts and completion texts, fetched once per comparison of the batch."""
    ids = sorted({row.comparison_id for row in rows})
    texts: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), TEXT_BATCH):
        for record in session.execute(_texts_query(ids[start : start + TEXT_BATCH])):
            texts[record[0]] = record
    sides: dict[int, tuple[Side, Side]] = {}  # shared by the rows of a comparison
    for row in rows:
        record = texts[row.comparison_id]
        pair = sides.get(row.comparison_id)
        if pair is None:
            pair = sides[row.comparison_id] = (Side(*record[3:8]), Side(*record[8:13]))
        row.messages, row.prompt_hash = record[1], record[2]
        row.chosen_side, row.rejected_side = pair if row.winner == "A" else pair[::-1]
        yield row


def _texts_query(comparison_ids: list[int]) -> Select[Any]:
    a, b = aliased(Completion.__table__), aliased(Completion.__table__)
    c, p = Comparison.__table__.c, Prompt.__table__.c
    return (
        select(
            c.id,
            Prompt.messages,
            p.content_hash,
            a.c.id,
            a.c.text,
            a.c.model_name,
            a.c.model_version_id,
            a.c.sampling,
            b.c.id,
            b.c.text,
            b.c.model_name,
            b.c.model_version_id,
            b.c.sampling,
        )
        .select_from(Comparison.__table__)
        .join(Prompt.__table__, p.id == c.prompt_id)
        .join(a, a.c.id == c.completion_a_id)
        .join(b, b.c.id == c.completion_b_id)
        .where(c.id.in_(comparison_ids))
    )


# --- PostgreSQL: a raw psycopg server-side cursor ----------------------------------------------

PG_READ_BATCH = 10_000  # judgments per fetch of the named cursor
PROMPT_CACHE = 10_000  # prompts kept between batches (a prompt may recur in later comparisons)


def _iter_rows_postgresql(
    session: Session,
    *,
    project_id: int,
    rules: RuleSet,
    selection: JudgmentFilter,
    stats: PreferenceStats,
) -> Iterator[PreferenceRow]:
    """The same rows as the generic path, read through psycopg's named cursor as plain tuples.

    One narrow query streams the judgments (ordered by comparison); the texts of each fetched
    batch come from one lookup keyed by comparison id, with prompts cached across batches.
    No ORM or SQLAlchemy ``Row`` objects are built per judgment.
    """
    from psycopg.rows import tuple_row

    connection = session.connection()
    raw = connection.connection.driver_connection
    compiled = _judgments_query(project_id, selection).compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    # flags as text: almost always '[]', parsed only when not.
    sql = str(compiled).replace("judgments.flags,", "judgments.flags::text,", 1)
    texts = _PgTexts(raw)
    wanted_ids = selection.judgment_ids
    excluded = selection.exclude_flags
    per_rater = rules.aggregation == "per_rater"
    loads = json.loads
    no_flags: list[str] = []
    with raw.cursor(name=f"rlhf_export_{id(session):x}", row_factory=tuple_row) as cursor:
        cursor.itersize = PG_READ_BATCH
        cursor.execute(sql, compiled.params)
        pending: list[tuple[Any, ...]] = []  # the judgments of a comparison cut by a batch boundary
        while True:
            fetched = cursor.fetchmany(PG_READ_BATCH)
            last = not fetched
            records = pending + fetched
            if not last:
                # Hold back the last comparison: its judgments may continue in the next batch.
                cut = len(records)
                tail_id = records[-1][1]
                while cut and records[cut - 1][1] == tail_id:
                    cut -= 1
                records, pending = records[:cut], records[cut:]
            decided: list[PreferenceRow] = []
            for comparison_id, group in itertools.groupby(records, key=_comparison_of):
                stats.comparisons_read += 1
                votes: list[Vote] = []
                r: tuple[Any, ...] = ()
                for r in group:
                    if wanted_ids is not None and r[0] not in wanted_ids:
                        continue
                    stats.judgments_read += 1
                    flags = no_flags if r[7] == "[]" else loads(r[7])
                    if excluded and not excluded.isdisjoint(flags):
                        stats.dropped["flagged"] += 1
                        continue
                    votes.append(Vote(r[0], r[2], r[3], r[4], r[5], flags, *r[8:13]))
                if votes:
                    decided.extend(
                        _decide_per_rater(votes, rules, stats, comparison_id, r[6], r[13], r[14])
                        if per_rater
                        else decide(
                            votes,
                            rules=rules,
                            stats=stats,
                            comparison_id=comparison_id,
                            prompt_id=r[6],
                            kind=str(r[13]),
                            gold_choice=r[14],
                        )
                    )
            if decided:
                texts.attach(decided)
                stats.rows += len(decided)
                yield from decided
            if last:
                break


def _comparison_of(record: tuple[Any, ...]) -> Any:
    return record[1]


def _decide_per_rater(
    votes: list[Vote],
    rules: RuleSet,
    stats: PreferenceStats,
    comparison_id: int,
    prompt_id: int,
    kind: str,
    gold_choice: str | None,
) -> list[PreferenceRow]:
    """`decide` for ``per_rater`` (same rules), without its per-call closures."""
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
    rows = []
    for vote in counted:
        choice = vote.choice
        if choice == "tie":
            stats.dropped["tie_votes"] += 1
            continue
        agreement = round(tally[choice] / n, 6)
        if agreement < minimum:
            stats.dropped["below_min_agreement"] += 1
            continue
        rows.append(
            PreferenceRow(
                comparison_id,
                prompt_id,
                kind,
                gold_choice,
                choice,
                round(float(vote.strength), 6),
                agreement,
                n,
                [vote],
            )  # fmt: skip
        )
    return rows


class _PgTexts:
    """Prompts and completion texts for a batch of rows: one query per batch, prompts cached."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.prompts: dict[int, tuple[list[dict[str, str]], str]] = {}
        # sampling settings repeat across completions: parsed (and canonically dumped) once
        self.samplings: dict[str | None, tuple[dict[str, Any] | None, str]] = {}

    def _sampling(self, text: str | None) -> tuple[dict[str, Any] | None, str]:
        found = self.samplings.get(text)
        if found is None:
            if len(self.samplings) >= PROMPT_CACHE:
                self.samplings.clear()
            value = None if text is None else json.loads(text)
            # the exporter's canonical text of the settings (Side.sampling_json)
            found = self.samplings[text] = (value, json.dumps(value, sort_keys=True) if value else "")
        return found

    def attach(self, rows: list[PreferenceRow]) -> None:
        from psycopg.rows import tuple_row

        comparison_ids = sorted({row.comparison_id for row in rows})
        prompts = self.prompts
        missing = sorted({row.prompt_id for row in rows if row.prompt_id not in prompts})
        with self.raw.cursor(row_factory=tuple_row) as cur:
            if missing:
                if len(prompts) + len(missing) > PROMPT_CACHE:
                    prompts.clear()
                cur.execute("SELECT id, messages, content_hash FROM prompts WHERE id = ANY(%s)", (missing,))
                for prompt_id, messages, content_hash in cur:
                    prompts[prompt_id] = (messages, content_hash)
            cur.execute(_PG_SIDES, (comparison_ids,))
            sampling = self._sampling
            sides = {
                record[0]: (
                    Side(*record[1:5], *sampling(record[5])),
                    Side(*record[6:10], *sampling(record[10])),
                )
                for record in cur
            }
        for row in rows:
            a, b = sides[row.comparison_id]
            row.messages, row.prompt_hash = prompts[row.prompt_id]
            if row.winner == "A":
                row.chosen_side, row.rejected_side = a, b
            else:
                row.chosen_side, row.rejected_side = b, a


_PG_SIDES = """
SELECT c.id, a.id, a.text, a.model_name, a.model_version_id, a.sampling::text,
       b.id, b.text, b.model_name, b.model_version_id, b.sampling::text
FROM comparisons c
JOIN completions a ON a.id = c.completion_a_id
JOIN completions b ON b.id = c.completion_b_id
WHERE c.id = ANY(%s)
"""


def rater_ids_for(session: Session, usernames: Iterable[str]) -> dict[str, int]:
    """Usernames -> user ids (for the raters filter); unknown names are left out."""
    names = sorted(set(usernames))
    if not names:
        return {}
    return dict(session.execute(select(User.username, User.id).where(User.username.in_(names))).all())
