"""The HTML forms the pages post, one pydantic model each, read by routes as
`Annotated[Model, Form()]`.

Field limits are checked by FastAPI before a route runs (422 naming the field). Fields that the
services validate with their own messages stay strings here, exactly as typed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import Role, Visibility
from app.services.quality import MAX_NOTE_CHARS
from app.web.input_guard import DB_ID_MAX


class LoginForm(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
    next: str = Field("", max_length=2000)


class PasswordForm(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)
    confirm_password: str = Field(max_length=256)


class ProjectForm(BaseModel):
    """The fields a project's form shares between creating and editing."""

    name: str = Field(max_length=200)
    instructions: str = Field("", max_length=50_000)
    overlap: str = Field("1", max_length=5)
    scale: str = Field("five", max_length=10)
    flags: str = Field("", max_length=2000)
    rationale_required: bool = False
    lease_minutes: str = Field("15", max_length=6)
    gold_percent: str = Field("0", max_length=6)
    max_overlap: str = Field("", max_length=5)
    split_threshold: str = Field("0.66", max_length=6)
    judge_rubric: str = Field("", max_length=50_000)
    selection_strategy: str = Field("arrival", max_length=16)
    random_percent: str = Field("20", max_length=6)
    # The task mix: one weight per kind (app/task_kinds.py; empty or 0: not given here).
    mix_compare: str = Field("", max_length=12)
    mix_rank: str = Field("", max_length=12)
    mix_write: str = Field("", max_length=12)
    mix_improve: str = Field("", max_length=12)
    mix_review: str = Field("", max_length=12)
    writing_overlap: str = Field("1", max_length=5)
    review_overlap: str = Field("1", max_length=5)
    min_words: str = Field("", max_length=8)
    max_words: str = Field("", max_length=8)
    max_answer_chars: str = Field("20000", max_length=8)

    rank_k: str = Field("4", max_length=4)

    def project_fields(self) -> dict[str, object]:
        """The values for ProjectCreate/ProjectUpdate: minutes and percents converted where they
        are numbers; anything else is left as typed, so that pydantic names the field."""
        lease: object = self.lease_minutes
        if self.lease_minutes.strip().isascii() and self.lease_minutes.strip().isdigit():
            lease = int(self.lease_minutes) * 60
        gold: object = self.gold_percent
        with contextlib.suppress(ValueError):
            gold = float(self.gold_percent or 0) / 100
        share: object = self.random_percent
        with contextlib.suppress(ValueError):
            share = float(self.random_percent or 0) / 100
        mix = {
            kind: weight.strip()
            for kind, weight in (
                ("compare", self.mix_compare), ("rank", self.mix_rank), ("write", self.mix_write),
                ("improve", self.mix_improve), ("review", self.mix_review),
            )
            if weight.strip()
        }  # fmt: skip
        return {
            "task_mix": mix or {"compare": 1.0},  # no weight given: pairs only
            "writing_overlap": self.writing_overlap,
            "review_overlap": self.review_overlap,
            "min_words": self.min_words.strip() or None,
            "max_words": self.max_words.strip() or None,
            "max_answer_chars": self.max_answer_chars,
            "gold_rate": gold,
            "selection_strategy": self.selection_strategy,
            "random_share": share,
            "max_overlap": self.max_overlap.strip() or None,
            "split_threshold": self.split_threshold,
            "judge_rubric": self.judge_rubric,
            "rank_k": self.rank_k,
            "name": self.name,
            "instructions": self.instructions,
            "overlap": self.overlap,
            "scale": self.scale,
            "flags": [f for line in self.flags.splitlines() for f in line.split(",")],
            "rationale_required": self.rationale_required,
            "lease_seconds": lease,
        }


class ProjectCreateForm(ProjectForm):
    slug: str = Field(max_length=63)


class ProjectUpdateForm(ProjectForm):
    is_active: bool = False


class TriageForm(BaseModel):
    """A project's AI triage: its judge (empty: off), the margin, the audit share in percent."""

    triage_model_id: str = Field("", max_length=12)
    triage_margin: str = Field("2", max_length=12)
    audit_percent: str = Field("10", max_length=12)


class ImportForm(BaseModel):
    kind: str = Field(pattern="^(prompts|pairs|demos|rankings|preferences)$")
    # Also make writing tasks for the project's prompts (write) and completions (improve).
    writing_tasks: list[Literal["write", "improve"]] | None = None


class UserForm(BaseModel):
    username: str = Field(max_length=64)
    role: Role = Role.rater


class ActiveForm(BaseModel):
    active: bool = False


class JudgmentForm(BaseModel):
    assignment_id: int = Field(ge=1, le=DB_ID_MAX)
    pick: int | None = None
    both_bad: bool = False
    flags: list[str] | None = None
    rationale: str = Field("", max_length=20_000)


class AssignmentForm(BaseModel):
    assignment_id: int = Field(ge=1, le=DB_ID_MAX)


# A written answer may be longer than any project's limit here: the service names the limit.
MAX_WRITTEN_CHARS = 500_000


class WritingForm(BaseModel):
    assignment_id: int = Field(ge=1, le=DB_ID_MAX)
    text: str = Field("", max_length=MAX_WRITTEN_CHARS)
    time_spent_ms: int = Field(0, ge=0, le=10**9)


class DraftForm(BaseModel):
    assignment_id: int = Field(ge=1, le=DB_ID_MAX)
    text: str = Field("", max_length=MAX_WRITTEN_CHARS)


class ReviewForm(BaseModel):
    demonstration_id: int = Field(ge=1, le=DB_ID_MAX)
    verdict: str = Field("", pattern="^(accept|reject|)$")
    score: int | None = Field(None, ge=1, le=5)
    flags: list[str] | None = None
    note: str = Field("", max_length=20_000)


class DisputeForm(BaseModel):
    action: str = Field("resolve", pattern="^(resolve|clear)$")
    choice: str = Field("", max_length=8)
    note: str = Field("", max_length=MAX_NOTE_CHARS)
    status: str = Field("unresolved", pattern="^(unresolved|resolved|all)$")
    page: int = Field(1, ge=1, le=1_000_000)
    scope: str = Field("split", pattern="^(split|any)$")


class NextForm(BaseModel):
    next: str = Field("", max_length=300)


class TokenForm(BaseModel):
    name: str = Field("", max_length=200)
    # Slugs of the projects a project-scoped token may read; none: the owner's projects.
    projects: list[str] = Field(default_factory=list, max_length=500)


class VisibilityForm(BaseModel):
    visibility: Visibility


class MembersForm(BaseModel):
    """Names typed into one field each, separated by commas, spaces or lines; the task kinds
    they are given (none ticked: every kind of the project's mix)."""

    usernames: str = Field("", max_length=10_000)
    groups: str = Field("", max_length=10_000)
    task_kinds: list[str] | None = Field(None, max_length=10)


class GroupForm(BaseModel):
    name: str = Field(max_length=64)


class AllProjectsForm(BaseModel):
    all_projects: bool = False


class RunForm(BaseModel):
    """The launch form. The run kind's config fields vary by kind: they arrive as extra fields
    (`config_values`), converted and validated by the kind's config schema."""

    model_config = ConfigDict(extra="allow")

    kind: str = ""
    project: str = ""
    base_model_id: str = ""
    reward_model_id: str = ""

    def config_values(self) -> dict[str, Any]:
        """The extra fields by name (a repeated field: its last value, as forms read it)."""
        return {
            name: value[-1] if isinstance(value, list) else value
            for name, value in (self.model_extra or {}).items()
        }


class ScheduleForm(BaseModel):
    project: str = ""
    min_new_judgments: str = ""
    method: str = ""
    base_model_id: str = ""
    judge_model_id: str = ""
    enabled: str = ""
    score: str = ""


def int_or_none(value: str | None) -> int | None:
    """A form's id field: a number, or None when empty, not a number, or past any row id (such
    an id names no row, and PostgreSQL would refuse to compare it)."""
    if not value or not (value.isascii() and value.isdigit()) or len(value) > 10:
        return None
    number = int(value)
    return number if number <= DB_ID_MAX else None


class RankingForm(BaseModel):
    assignment_id: int = Field(ge=1, le=DB_ID_MAX)
    # The order notation (app/services/rating/ranking_judgments.py: parse_order), e.g. "C=A D | B".
    order: str = Field("", max_length=200)
