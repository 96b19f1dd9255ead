"""The task kinds raters are given, each declared once: its title and description, the keys the
workbench shows, its template, and the service functions the dispatcher calls.

`app/services/rating/tasks.py` (`next_task`) reads the table: a rater's active lease of any kind
first, else a weighted draw over the project's `task_mix` among the kinds that have work for
them. The routes (`/rate/<slug>`), the admin's project form and `rlhf projects --tasks` read it
too. Adding a task kind = one service module (claim, current lease, view, progress, has_work)
+ one entry here + a template.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from app.models import Project, WritingKind
from app.services import rating, writing
from app.services.rating import ranking
from app.services.writing import reviews


class TaskKind(enum.StrEnum):
    compare = "compare"  # pick the better of two completions
    rank = "rank"  # order K completions of one prompt
    write = "write"  # write the ideal next assistant turn
    improve = "improve"  # edit a model's completion into the ideal one
    review = "review"  # accept or reject another rater's demonstration, with a score


# claim(session, *, project, rater_id, now) -> the rater's lease of this kind (kept, renewed or new), or None
Claim = Callable[..., Any]
# current(session, *, project, rater_id, now) -> the rater's unexpired lease of this kind, or None
Current = Callable[..., Any]
# view(session, lease) -> what the template shows
View = Callable[[Session, Any], Any]
# progress(session, *, project, rater_id) -> done today, in total, and what is left
ProgressOf = Callable[..., rating.Progress]
# has_work(session, *, project, rater_id, now) -> whether a claim could give the rater something
HasWork = Callable[..., bool]


@dataclass(frozen=True)
class TaskSpec:
    kind: TaskKind
    title: str  # the admin's and the rater's name for it
    description: str  # one sentence: the project form's and the CLI's help
    keys: tuple[tuple[str, str], ...]  # (key, what it does), shown in the workbench's help
    template: str  # the workbench fragment htmx swaps in (templates/rate/)
    claim: Claim
    current: Current
    view: View
    progress: ProgressOf
    has_work: HasWork


def _compare_current(session: Session, *, project: Project, rater_id: int, now: datetime) -> Any:
    return rating.current_lease(session, project=project, rater_id=rater_id, now=now)


def _compare_has_work(session: Session, *, project: Project, rater_id: int, now: datetime) -> bool:
    return rating.progress(session, project=project, rater_id=rater_id, now=now).remaining > 0


_WRITING_KEYS = (
    ("Ctrl+Enter", "Submit the answer"),
    ("Esc", "Leave the editor (then s skips, u undoes)"),
    ("e", "Back to the editor"),
    ("s", "Skip this task"),
    ("u", "Undo your last submission"),
)
_REVIEW_KEYS = (
    ("a / r", "Accept or reject"),
    ("1-5", "Quality score"),
    ("/", "Write a note"),
    ("Enter", "Submit (Ctrl+Enter from the note)"),
)


def _writing(kind: WritingKind, title: str, description: str) -> TaskSpec:
    return TaskSpec(
        TaskKind(kind.value), title, description, _WRITING_KEYS, "rate/_writing.html",
        claim=partial(writing.claim, kind=kind), current=partial(writing.current, kind=kind),
        view=writing.view, progress=partial(writing.progress, kind=kind),
        has_work=partial(writing.has_work, kind=kind),
    )  # fmt: skip


_COMPARE_KEYS = (
    ("1-5", "Which response is better (on the project's scale)"),
    ("x", "Both responses are bad"),
    ("/", "Write a rationale"),
    ("Enter", "Submit"),
    ("s", "Skip this pair"),
    ("u", "Undo your last judgment"),
)

_RANK_KEYS = (
    ("A-I", "Select a response by its letter (the first time also places it next in the order)"),
    ("↑ ↓", "Move the selected response (or the all-bad line) up or down"),
    ("1-9", "Put the selected response at that place"),
    ("=", "Tie the selected response with the one above it (again: untie)"),
    ("x", "Draw the all-bad line below the selected response, or select it (again: remove it)"),
    ("/", "Type the whole order, e.g. CADB (C=A ties, | the line); Esc leaves the box"),
    ("Enter", "Submit the order"),
    ("s", "Skip this ranking"),
    ("u", "Undo your last ranking"),
)

TASK_KINDS: dict[TaskKind, TaskSpec] = {
    spec.kind: spec
    for spec in (
        TaskSpec(
            TaskKind.compare, "Compare two responses",
            "Raters pick the better of two completions of a prompt (pairwise preference).",
            _COMPARE_KEYS, "rate/_workbench.html",
            claim=rating.claim_next, current=_compare_current, view=rating.pair_view,
            progress=rating.progress, has_work=_compare_has_work,
        ),
        TaskSpec(
            TaskKind.rank, "Rank responses",
            "Raters put the K completions of a prompt in order (K: rank_k), with ties and an all-bad line.",
            _RANK_KEYS, "rate/_ranking.html",
            claim=ranking.claim_next_ranking, current=ranking.current_ranking_lease,
            view=ranking.ranking_view, progress=ranking.ranking_progress,
            has_work=ranking.has_ranking_work,
        ),
        _writing(WritingKind.write, "Write a response",
                 "Raters write the ideal next assistant turn of a conversation (a demonstration)."),
        _writing(WritingKind.improve, "Improve a response",
                 "Raters edit a model's completion into the ideal response (also an edit preference)."),
        TaskSpec(
            TaskKind.review, "Review demonstrations",
            "Raters accept or reject other raters' written and improved demonstrations, with a 1-5 score.",
            _REVIEW_KEYS, "rate/_review.html",
            claim=reviews.claim, current=reviews.current, view=reviews.view,
            progress=reviews.progress, has_work=reviews.has_work,
        ),
    )
}  # fmt: skip

# A project's mix unless it says otherwise.
DEFAULT_MIX: dict[str, float] = {TaskKind.compare.value: 1.0}


def spec(kind: TaskKind | str) -> TaskSpec:
    return TASK_KINDS[TaskKind(kind)]


class InvalidMix(ValueError):
    """A task mix or a list of task kinds that cannot be stored; `str()` says which part."""


def parse_mix(text: str) -> dict[str, float]:
    """`compare=0.7,write=0.3` (a kind alone weighs 1) -> {kind: weight}; weights are relative."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        mix[name.strip()] = _weight(name.strip(), weight.strip() or "1")
    return check_mix(mix)


def _weight(name: str, text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise InvalidMix(f"{name}: weight {text!r} is not a number") from None
    if not weight >= 0 or weight == float("inf"):
        raise InvalidMix(f"{name}: weight {text!r} must be a finite number >= 0")
    return weight


def check_mix(mix: dict[str, Any]) -> dict[str, float]:
    """The mix as stored: known kinds, finite weights >= 0, at least one above 0."""
    known = ", ".join(TASK_KINDS)
    checked: dict[str, float] = {}
    for name, weight in mix.items():
        if name not in TASK_KINDS:
            raise InvalidMix(f"unknown task kind {name!r} (known: {known})")
        checked[name] = _weight(name, str(weight))
    if not any(weight > 0 for weight in checked.values()):
        raise InvalidMix(f"give at least one task kind a weight above 0 (known: {known})")
    return checked


def check_kinds(names: list[str]) -> list[str]:
    """A member's task kinds as stored: known kinds, each once, in the table's order."""
    unknown = [name for name in names if name not in TASK_KINDS]
    if unknown:
        raise InvalidMix(f"unknown task kind {unknown[0]!r} (known: {', '.join(TASK_KINDS)})")
    return [kind.value for kind in TASK_KINDS if kind.value in names]


def format_mix(mix: dict[str, Any]) -> str:
    """{kind: weight} -> `compare=0.7,write=0.3` (the CLI's and the form's shape)."""
    return ",".join(f"{name}={float(weight):g}" for name, weight in mix.items())
