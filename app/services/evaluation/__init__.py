"""Model evaluation from votes: Bradley–Terry strengths and bootstrap intervals, length bias of
labels and policies, and the leaderboard of a project's model versions with its evaluate runs."""

from app.services.evaluation.bradley_terry import (
    ELO_BASE,
    ELO_SCALE,
    Outcome,
    bootstrap_intervals,
    bradley_terry,
    to_elo,
    win_probability,
)
from app.services.evaluation.leaderboard import (
    EvaluatedVersion,
    EvaluateResult,
    Leaderboard,
    LeaderboardRow,
    VersionGame,
    evaluate_results,
    evaluated_versions,
    evaluation_figures,
    leaderboard,
    version_games,
)
from app.services.evaluation.length_bias import (
    LENGTH_BINS,
    LabelLengthBias,
    LengthBin,
    Source,
    VersionLength,
    label_length_bias,
    length_controlled_win_rate,
    policy_lengths,
)

__all__ = [
    "ELO_BASE",
    "ELO_SCALE",
    "LENGTH_BINS",
    "EvaluateResult",
    "EvaluatedVersion",
    "LabelLengthBias",
    "Leaderboard",
    "LeaderboardRow",
    "LengthBin",
    "Outcome",
    "Source",
    "VersionGame",
    "VersionLength",
    "bootstrap_intervals",
    "bradley_terry",
    "evaluate_results",
    "evaluated_versions",
    "evaluation_figures",
    "label_length_bias",
    "leaderboard",
    "length_controlled_win_rate",
    "policy_lengths",
    "to_elo",
    "version_games",
    "win_probability",
]
