from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models import Scale

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ProjectBase(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    instructions: str = Field("", max_length=50_000, description="Markdown shown to raters.")
    overlap: int = Field(1, ge=1, le=50, description="Distinct raters per pair.")
    scale: Scale = Scale.five
    flags: list[str] = Field(default_factory=list, max_length=8)
    rationale_required: bool = False
    lease_seconds: int = Field(900, ge=30, le=7 * 24 * 3600)

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
