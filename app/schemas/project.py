from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.models import Scale, SelectionStrategy
from app.models.project import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ANSWER_CHARS

# The largest answer limit a project may set (the workbench's form takes up to 500,000).
MAX_ANSWER_CHARS = 200_000


SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ProjectBase(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    instructions: str = Field("", max_length=50_000, description="Markdown shown to raters.")
    overlap: int = Field(1, ge=1, le=50, description="Distinct raters per pair.")
    scale: Scale = Scale.five
    flags: list[str] = Field(default_factory=list, max_length=8)
    rationale_required: bool = False
    lease_seconds: int = Field(DEFAULT_LEASE_SECONDS, ge=30, le=7 * 24 * 3600)
    gold_rate: float = Field(
        0.0, ge=0, le=1, description="Share of claims that draw a gold pair the rater has not seen."
    )
    max_overlap: int | None = Field(
        None, ge=1, le=50, description="Adaptive overlap: split pairs get more raters, up to this many."
    )
    split_threshold: float = Field(
        0.66, gt=0.5, le=1, description="Votes are split while the largest group holds less than this."
    )
    judge_rubric: str = Field(
        "", max_length=50_000, description="Rubric or constitution for AI judges (markdown)."
    )
    selection_strategy: SelectionStrategy = Field(
        SelectionStrategy.arrival,
        description="Which open pair raters get next: arrival (newest first), random, uncertainty "
        "(the pairs the latest score run is least sure of first), or mix (uncertainty, with a "
        "random share).",
    )
    random_share: float = Field(
        0.2, ge=0, le=1, description="Under mix: the share of claims served a random open pair."
    )
    task_mix: dict[str, float] = Field(
        default_factory=lambda: {"compare": 1.0},
        description="The task kinds raters get and their relative weights, e.g. "
        "{compare: 0.7, write: 0.3} (kinds: compare, rank, write, improve, review).",
    )
    writing_overlap: int = Field(1, ge=1, le=50, description="Distinct writers per write or improve task.")
    review_overlap: int = Field(1, ge=1, le=50, description="Distinct reviewers per written demonstration.")
    min_words: int | None = Field(
        None, ge=1, le=100_000, description="Length guidance: at least this many words."
    )
    max_words: int | None = Field(
        None, ge=1, le=100_000, description="Length guidance: at most this many words."
    )
    max_answer_chars: int = Field(
        DEFAULT_MAX_ANSWER_CHARS, ge=1, le=MAX_ANSWER_CHARS, description="A written answer's hard limit."
    )
    rank_k: int = Field(
        4, ge=3, le=9, description="Ranking tasks: the completions of one prompt a rater puts in order."
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> ProjectBase:
        if self.max_overlap is not None and self.max_overlap < self.overlap:
            raise ValueError(
                f"max_overlap ({self.max_overlap}) must be at least the overlap ({self.overlap}), "
                "or empty to turn adaptive overlap off"
            )
        return self

    @model_validator(mode="after")
    def _check_words(self) -> ProjectBase:
        if self.min_words is not None and self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) must be at least min_words ({self.min_words})")
        return self

    @field_validator("task_mix")
    @classmethod
    def _check_mix(cls, mix: dict[str, float]) -> dict[str, float]:
        from app.task_kinds import check_mix  # the table imports the services, which import this

        return check_mix(mix)

    @field_validator("flags")
    @classmethod
    def _clean_flags(cls, flags: list[str]) -> list[str]:
        cleaned: list[str] = []
        for flag in flags:
            flag = flag.strip()
            if not flag:
                continue
            if len(flag) > 40:
                raise ValueError(f"flag {flag[:40]!r}… is longer than 40 characters")
            if flag not in cleaned:
                cleaned.append(flag)
        return cleaned


class ProjectCreate(ProjectBase):
    slug: str = Field(min_length=1, max_length=63)

    @field_validator("slug")
    @classmethod
    def _check_slug(cls, slug: str) -> str:
        if not SLUG_RE.match(slug):
            raise ValueError("use lower-case letters, digits and dashes, starting with a letter or digit")
        return slug


class ProjectUpdate(ProjectBase):
    is_active: bool = True
