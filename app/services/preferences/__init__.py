"""Judgments -> preference rows (prompt, chosen, rejected): the aggregation rules and `decide`
(rules), the judgments query (records), and the row paths (rows; postgres for PostgreSQL)."""

from app.services.preferences.rows import iter_preference_rows, preference_rows, rater_ids_for
from app.services.preferences.rules import (
    AGGREGATIONS,
    Aggregation,
    Gold,
    JudgmentFilter,
    LabelSource,
    PreferenceRow,
    PreferenceStats,
    RuleSet,
    Side,
    Ties,
    Vote,
    decide,
)

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "Gold",
    "JudgmentFilter",
    "LabelSource",
    "PreferenceRow",
    "PreferenceStats",
    "RuleSet",
    "Side",
    "Ties",
    "Vote",
    "decide",
    "iter_preference_rows",
    "preference_rows",
    "rater_ids_for",
]
