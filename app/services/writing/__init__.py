"""Writing: raters write the next assistant turn (write) or improve a model's completion
(improve), and review each other's demonstrations (review). assignment holds the tasks' claims,
leases, drafts and skips; submit stores answers once (with the edit preference of an
improvement) and undoes the last; reviews holds the review task and its rule; checks holds the
answer's limits, the lazy-writer checks, the diff and the edit distance."""

from app.services.writing.assignment import (
    WritingView,
    add_project_tasks,
    add_tasks,
    claim,
    current,
    has_work,
    progress,
    save_draft,
    skip,
    view,
)
from app.services.writing.checks import SIMILAR, check_answer, edit_distance, lazy_flags, similarity
from app.services.writing.reviews import ReviewView, decide, submit_review
from app.services.writing.submit import edit_completion, submit, undo_last

__all__ = [
    "SIMILAR",
    "ReviewView",
    "WritingView",
    "add_project_tasks",
    "add_tasks",
    "check_answer",
    "claim",
    "current",
    "decide",
    "edit_completion",
    "edit_distance",
    "has_work",
    "lazy_flags",
    "progress",
    "save_draft",
    "similarity",
    "skip",
    "submit",
    "submit_review",
    "undo_last",
    "view",
]
