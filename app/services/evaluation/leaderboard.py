"""The leaderboard of a project's model versions, and the figures of its evaluate runs.

**Which votes count for the leaderboard.** Judgments (human by default; ``source="ai"`` or
``"both"``) on comparisons of the project whose two completions both carry a ``model_version_id``
and carry different ones: exactly what a generate run with strategy ``versus`` puts in the
queue. Every judgment is one game; A, B or tie as the rater chose it (strength and *both bad* are
not used). A ranking judgment is the pairwise games it implies (rankings.py in
services/preferences: the better-ranked completion wins, equal ranks tie, above the all-bad line
beats below), one per two of its completions sampled by different registered versions. Versions
are ranked by Bradley–Terry strength (`bradley_terry`), with bootstrap intervals and a
length-controlled win rate (`length_bias`).
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Comparison,
    Completion,
    Judgment,
    JudgmentSource,
    ModelVersion,
    Ranking,
    RankingJudgment,
    Run,
    RunKind,
    RunStatus,
)
from app.services.evaluation.bradley_terry import (
    ELO_BASE,
    ELO_SCALE,
    Outcome,
    bootstrap_intervals,
    bradley_terry,
)
from app.services.evaluation.length_bias import (
    Source,
    _source_filter,
    length_controlled_win_rate,
    policy_lengths,
)
from app.services.preferences.rankings import expand


@dataclass(frozen=True)
class VersionGame:
    """One vote between two model versions, from the side of completion A."""

    judgment_id: int  # a judgment's id, or a ranking judgment's for a game a ranking implies
    comparison_id: int  # 0 for a game a ranking implies
    version_a: int
    version_b: int
    score_a: float
    length_a: int
    length_b: int
    ranking_id: int | None = None


def version_games(session: Session, project_id: int, *, source: Source = "human") -> list[VersionGame]:
    """The votes the leaderboard counts (module docstring), in judgment order."""
    comp_a, comp_b = aliased(Completion), aliased(Completion)
    rows = session.execute(
        select(
            Judgment.id,
            Comparison.id,
            comp_a.model_version_id,
            comp_b.model_version_id,
            Judgment.choice,
            func.length(comp_a.text),
            func.length(comp_b.text),
        )
        .join(Comparison, Comparison.id == Judgment.comparison_id)
        .join(comp_a, comp_a.id == Comparison.completion_a_id)
        .join(comp_b, comp_b.id == Comparison.completion_b_id)
        .where(
            Judgment.project_id == project_id,
            comp_a.model_version_id.is_not(None),
            comp_b.model_version_id.is_not(None),
            comp_a.model_version_id != comp_b.model_version_id,
            *_source_filter(source),
        )
        .order_by(Judgment.id)
    ).all()
    score = {"A": 1.0, "B": 0.0, "tie": 0.5}
    games = [
        VersionGame(
            judgment_id=jid,
            comparison_id=cid,
            version_a=va,
            version_b=vb,
            score_a=score[str(choice.value if hasattr(choice, "value") else choice)],
            length_a=int(la or 0),
            length_b=int(lb or 0),
        )
        for jid, cid, va, vb, choice, la, lb in rows
    ]
    return games + ranking_games(session, project_id, source=source)


def ranking_games(session: Session, project_id: int, *, source: Source = "human") -> list[VersionGame]:
    """The games the project's ranking judgments imply between versions, in judgment order."""
    j, r = RankingJudgment, Ranking
    query = (
        select(j.id, j.ranking_id, j.ranks, j.cutoff_rank, r.completion_ids)
        .join(r, r.id == j.ranking_id)
        .where(j.project_id == project_id)
        .order_by(j.id)
    )
    if source != "both":
        query = query.where(j.source == JudgmentSource(source))
    judged = session.execute(query).all()
    completion_ids = sorted({cid for *_, ids in judged for cid in ids})
    sampled: dict[int, tuple[int, int]] = {}  # completion -> (version, length)
    for start in range(0, len(completion_ids), 1000):
        chunk = completion_ids[start : start + 1000]
        for cid, version, length in session.execute(
            select(Completion.id, Completion.model_version_id, func.length(Completion.text)).where(
                Completion.id.in_(chunk), Completion.model_version_id.is_not(None)
            )
        ):
            sampled[cid] = (version, int(length or 0))
    score = {"A": 1.0, "B": 0.0, "tie": 0.5}
    games = []
    for jid, ranking_id, ranks, cutoff, ids in judged:
        if len(ranks) != len(ids):
            continue
        for pair, _ in expand(ranks, cutoff):
            a, b = sampled.get(ids[pair.i]), sampled.get(ids[pair.j])
            if a is None or b is None or a[0] == b[0]:
                continue
            games.append(VersionGame(jid, 0, a[0], b[0], score[pair.choice], a[1], b[1], ranking_id))
    return games


@dataclass
class LeaderboardRow:
    rank: int
    model_version_id: int
    name: str
    kind: str
    parent_id: int | None
    theta: float  # Bradley–Terry log-strength, mean 0 over the versions on the board
    low: float  # bootstrap interval of theta
    high: float
    games: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + ties / 2) / games, against the whole field
    lc_win_rate: float  # length-controlled: the same at equal completion length
    mean_length: float | None  # characters, over the version's completions in the project
    evaluation: dict[str, Any]  # the version's metrics["evaluation"] (evaluate runs)

    @property
    def elo(self) -> float:
        return ELO_BASE + ELO_SCALE * self.theta

    @property
    def elo_low(self) -> float:
        return ELO_BASE + ELO_SCALE * self.low

    @property
    def elo_high(self) -> float:
        return ELO_BASE + ELO_SCALE * self.high


@dataclass
class Leaderboard:
    """Versions ranked by Bradley–Terry strength, with the pairwise record behind it.

    ``matrix[i][j]`` is row i's score rate against row j (wins plus half the ties over games),
    ``None`` where they never met; ``matrix_games[i][j]`` the number of games.
    """

    source: str
    games: int
    rounds: int
    level: float
    rows: list[LeaderboardRow] = field(default_factory=list)
    matrix: list[list[float | None]] = field(default_factory=list)
    matrix_games: list[list[int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows


def leaderboard(
    session: Session,
    project_id: int,
    *,
    source: Source = "human",
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prior: float = 1.0,
) -> Leaderboard:
    """Rank the model versions of a project's version-vs-version votes (module docstring)."""
    games = version_games(session, project_id, source=source)
    board = Leaderboard(source=source, games=len(games), rounds=rounds, level=level)
    if not games:
        return board
    outcomes = [(str(g.version_a), str(g.version_b), g.score_a) for g in games]
    theta = bradley_terry(outcomes, prior=prior)
    intervals = _cached_intervals(tuple(sorted(Counter(outcomes).items())), rounds, seed, level, prior)

    record: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # wins, ties, losses
    scores: dict[int, list[float]] = defaultdict(list)
    deltas: dict[int, list[float]] = defaultdict(list)
    pair_score: dict[tuple[int, int], float] = defaultdict(float)
    pair_games: dict[tuple[int, int], int] = defaultdict(int)
    for g in games:
        for me, other, s, mine, theirs in (
            (g.version_a, g.version_b, g.score_a, g.length_a, g.length_b),
            (g.version_b, g.version_a, 1.0 - g.score_a, g.length_b, g.length_a),
        ):
            record[me][0 if s == 1.0 else 1 if s == 0.5 else 2] += 1
            scores[me].append(s)
            deltas[me].append(float(mine - theirs))
            pair_score[(me, other)] += s
            pair_games[(me, other)] += 1

    ids = [int(p) for p in theta]
    versions = {v.id: v for v in session.scalars(select(ModelVersion).where(ModelVersion.id.in_(ids)))}
    lengths = {v.model_version_id: v.mean_length for v in policy_lengths(session, project_id)}
    ids.sort(key=lambda vid: (-theta[str(vid)], vid))
    for rank, vid in enumerate(ids, start=1):
        version = versions.get(vid)
        wins, ties, losses = record[vid]
        low, high = intervals[str(vid)]
        board.rows.append(
            LeaderboardRow(
                rank=rank,
                model_version_id=vid,
                name=version.name if version else f"#{vid}",
                kind=str(version.kind) if version else "",
                parent_id=version.parent_id if version else None,
                theta=theta[str(vid)],
                low=low,
                high=high,
                games=wins + ties + losses,
                wins=wins,
                ties=ties,
                losses=losses,
                win_rate=sum(scores[vid]) / len(scores[vid]),
                lc_win_rate=length_controlled_win_rate(scores[vid], deltas[vid]),
                mean_length=lengths.get(vid),
                evaluation=evaluation_figures(version) if version else {},
            )
        )
    board.matrix = [
        [pair_score[(i, j)] / pair_games[(i, j)] if pair_games.get((i, j)) else None for j in ids]
        for i in ids
    ]
    board.matrix_games = [[pair_games.get((i, j), 0) for j in ids] for i in ids]
    return board


@functools.lru_cache(maxsize=64)
def _cached_intervals(
    games: tuple[tuple[Outcome, int], ...], rounds: int, seed: int, level: float, prior: float
) -> dict[str, tuple[float, float]]:
    """`bootstrap_intervals` keyed by the games themselves (a multiset): pages reloaded while
    no vote arrived reuse the resamples; any new vote is a new key."""
    outcomes = [game for game, count in games for _ in range(count)]
    return bootstrap_intervals(outcomes, rounds=rounds, seed=seed, level=level, prior=prior)


def evaluation_figures(version: ModelVersion) -> dict[str, Any]:
    """The scalar figures an evaluate run stored in ``metrics["evaluation"]``."""
    evaluation = (version.metrics or {}).get("evaluation")
    if not isinstance(evaluation, dict):
        return {}
    return {k: v for k, v in evaluation.items() if isinstance(v, str | int | float | bool) or v is None}


@dataclass(frozen=True)
class EvaluatedVersion:
    model_version_id: int
    name: str
    kind: str
    figures: dict[str, Any]


def evaluated_versions(session: Session, project_id: int) -> list[EvaluatedVersion]:
    """The versions with evaluate-run results for this project (``evaluation.project_id``), or
    versions of the project with results, newest first."""
    result = []
    for version in session.scalars(
        select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    ):
        figures = evaluation_figures(version)
        if not figures:
            continue
        owner = figures.get("project_id", version.project_id)
        if owner != project_id and version.project_id != project_id:
            continue
        result.append(EvaluatedVersion(version.id, version.name, str(version.kind), figures))
    return result


@dataclass(frozen=True)
class EvaluateResult:
    """One finished evaluate run: which version, against what, judged by whom, and its figures."""

    run_id: int
    finished_at: Any
    model_version_id: int | None
    model: str
    kind: str  # "reward" or "policy": what was evaluated
    reference: str | None
    judge: str | None
    figures: dict[str, Any]


def evaluate_results(session: Session, project_id: int, *, limit: int = 100) -> list[EvaluateResult]:
    """Every succeeded evaluate run of the project, newest first: the history of a version's
    figures, one row per reference and judge (a version's metrics keep only the latest)."""
    rows = session.scalars(
        select(Run)
        .where(Run.project_id == project_id, Run.kind == RunKind.evaluate, Run.status == RunStatus.succeeded)
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(limit)
    ).all()
    model_ids = {int(r.config["model_id"]) for r in rows if isinstance((r.config or {}).get("model_id"), int)}
    kinds: dict[int | None, Any] = {}
    if model_ids:
        query = select(ModelVersion.id, ModelVersion.kind).where(ModelVersion.id.in_(model_ids))
        kinds = {vid: kind for vid, kind in session.execute(query)}
    result = []
    for run in rows:
        summary = dict(run.summary or {})
        config = dict(run.config or {})
        kind = kinds.get(config.get("model_id"))
        # a deleted version: a policy's figures are a win rate, a reward model's an accuracy
        kind_name = str(kind) if kind is not None else ("policy" if "win_rate" in summary else "reward")
        figures = {
            k: v
            for k, v in summary.items()
            if k not in ("model", "reference", "judge")
            and (isinstance(v, str | int | float | bool) or v is None)
        }
        result.append(
            EvaluateResult(
                run_id=run.id,
                finished_at=run.finished_at,
                model_version_id=config.get("model_id"),
                model=str(summary.get("model") or f"#{config.get('model_id')}"),
                kind=kind_name,
                reference=summary.get("reference"),
                judge=summary.get("judge"),
                figures=figures,
            )
        )
    return result
