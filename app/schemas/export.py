"""What a researcher asks an export for: the same options on the page, the API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["jsonl", "parquet", "csv"]
EXTENSIONS: dict[str, str] = {"jsonl": ".jsonl", "parquet": ".parquet", "csv": ".csv"}


def _split_commas(values: list[str]) -> list[str]:
    """Accept repeated values and comma-separated ones alike (``?raters=a,b&raters=c``)."""
    out: list[str] = []
    for value in values:
        out += [part.strip() for part in value.split(",") if part.strip()]
    return sorted(set(out))


def _iso_only(value: object) -> object:
    """A time as ISO 8601 text; a bare number (which pydantic would read as Unix seconds) is
    refused, as the schema documents a date-time string."""
    number = value.strip().lstrip("+-").replace(".", "", 1) if isinstance(value, str) else ""
    if isinstance(value, int | float) or number.isdigit():
        raise ValueError("a date or time in ISO 8601, e.g. 2026-01-31 or 2026-01-31T12:00:00Z")
    return value


def _as_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class _ExportBase(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    format: Format = Field("jsonl", description="jsonl, parquet or csv.")
    date_from: datetime | None = Field(None, description="Only labels created at or after this time (UTC).")
    date_to: datetime | None = Field(None, description="Only labels created before this time (UTC).")
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of prompts in the test split (by a hash of the prompt)."
    )
    split_seed: int = Field(0, ge=0, description="Changes which prompts land in the test split.")
    license: str = Field("other", max_length=64, description="License id written in the dataset card.")
    metadata: bool = Field(True, description="Add the metadata columns (ids, raters, provenance).")

    _iso_dates = field_validator("date_from", "date_to", mode="before")(_iso_only)
    _dates = field_validator("date_from", "date_to")(_as_utc)

    @model_validator(mode="after")
    def _check_dates(self) -> _ExportBase:
        if self.date_from and self.date_to and self.date_from >= self.date_to:
            raise ValueError("date_from must be before date_to")
        return self


class ComparisonExport(_ExportBase):
    """Options of a comparisons (preference) export. See app/services/preferences.py for the rules."""

    layout: Literal["conversational", "implicit", "text", "hh"] | None = Field(
        None,
        description="conversational: prompt/chosen/rejected message lists (TRL, explicit prompt); "
        "implicit: chosen/rejected hold the whole conversation; text: plain strings; hh: "
        "Anthropic HH-RLHF transcripts. Default: conversational, text for CSV.",
    )
    aggregation: Literal["majority", "mean_strength", "per_rater"] = Field(
        "majority", description="majority or mean_strength: one row per comparison; per_rater: raw."
    )
    ties: Literal["drop", "ignore"] = Field(
        "drop",
        description="drop: tie votes count against agreement, tied outcomes are dropped; "
        "ignore: tie votes are not counted at all.",
    )
    include_both_bad: bool = Field(False, description="Keep judgments marked both bad as ordinary votes.")
    label_source: Literal["human", "ai", "both", "edit", "human_edit", "all"] = Field(
        "human",
        description="Whose labels: human votes, ai judges', both of those, edit (an improved "
        "completion beats its original), human_edit, or all.",
    )
    min_agreement: float = Field(0.0, ge=0, le=1, description="Drop rows whose agreement is below this.")
    raters: list[str] = Field(default_factory=list, description="Only these raters (usernames).")
    exclude_flags: list[str] = Field(
        default_factory=list, description="Drop judgments with any of these flags."
    )
    gold: Literal["include", "exclude", "only"] = Field("include", description="Gold pairs in or out.")

    _lists = field_validator("raters", "exclude_flags")(_split_commas)

    @model_validator(mode="after")
    def _check_layout(self) -> ComparisonExport:
        if self.format == "csv" and self.layout in ("conversational", "implicit"):
            raise ValueError("CSV holds plain text: use the text or hh layout (or JSONL/Parquet)")
        return self

    @property
    def resolved_layout(self) -> str:
        return self.layout or ("text" if self.format == "csv" else "conversational")


class RankingExport(_ExportBase):
    """Options of a rankings export: one row per ranking, every rater's order of its completions."""

    layout: Literal["conversational", "text"] | None = Field(
        None,
        description="conversational: prompt is the conversation (a list of role/content messages); "
        "text: the prompt as plain text. Default: conversational, text for CSV.",
    )
    label_source: Literal["human", "ai", "both", "edit", "human_edit", "all"] = Field(
        "human", description="Whose rankings: human raters', AI judges', or both (as for comparisons)."
    )
    raters: list[str] = Field(default_factory=list, description="Only these raters (usernames).")
    gold: Literal["include", "exclude", "only"] = Field("include", description="Gold rankings in or out.")

    _lists = field_validator("raters")(_split_commas)

    @model_validator(mode="after")
    def _check_layout(self) -> RankingExport:
        if self.format == "csv" and self.layout == "conversational":
            raise ValueError("CSV holds plain text: use the text layout (or JSONL/Parquet)")
        return self

    @property
    def resolved_layout(self) -> str:
        return self.layout or ("text" if self.format == "csv" else "conversational")


class DemoExport(_ExportBase):
    """Options of a demonstrations (SFT) export."""

    layout: Literal["messages", "text"] | None = Field(
        None,
        description="messages: the conversation with the response as its last message (TRL "
        "SFT); text: prompt and response strings. Default: messages, text for CSV.",
    )

    demonstration_source: Literal["all", "imported", "written", "improved", "raters"] = Field(
        "all",
        description="Which demonstrations: all, imported, written by raters, improved by raters, "
        "or raters (written and improved).",
    )
    include_pending: bool = Field(False, description="Also export demonstrations not yet reviewed.")
    include_rejected: bool = Field(False, description="Also export demonstrations their reviewers rejected.")

    @model_validator(mode="after")
    def _check_layout(self) -> DemoExport:
        if self.format == "csv" and self.layout == "messages":
            raise ValueError("CSV holds plain text: use the text layout (or JSONL/Parquet)")
        return self

    @property
    def resolved_layout(self) -> str:
        return self.layout or ("text" if self.format == "csv" else "messages")


class ProjectPublic(BaseModel):
    slug: str
    name: str
    judgments: int
    pairs: int
    demonstrations: int


class ProjectsPublic(BaseModel):
    data: list[ProjectPublic]


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
