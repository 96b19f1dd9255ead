"""Who an AI judge is: its model version, the rubric an LM judge is prompted with, and the user
its judgments are stored under (`ai-judge:<model name>[:<rubric hash>]`, role judge).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflicts
from app.models import ModelKind, ModelVersion, Project, Role, User
from app.schemas.training import JUDGE_TEMPLATE
from app.services.runs.records import RunError

JUDGE_USER_PREFIX = "ai-judge:"
UNUSABLE_PASSWORD = "!"  # not an argon2 hash: no password ever verifies against it


@dataclass
class JudgeIdentity:
    """Who an AI judge is: its model version and, for an LM judge, the prompt it is given."""

    method: str  # "rm" (a reward model scores both sides) | "lm" (a prompted causal LM)
    model_version_id: int
    model_name: str
    username: str
    rubric: str | None = None
    rubric_sha256: str | None = None
    orders: str = "agree"  # LM judge: how the two orders' answers combine

    def describe(self) -> str:
        if self.method == "rm":
            return f"reward model {self.model_name}"
        averaged = ", orders averaged" if self.orders == "average" else ""
        return f"LM judge {self.model_name} (rubric {str(self.rubric_sha256)[:8]}{averaged})"


def judge_rubric(project: Project, override: str | None) -> str:
    """The rubric an LM judge is prompted with: the run's override, the project's judge rubric,
    else the instructions its raters read."""
    for text in (override, project.judge_rubric, project.instructions):
        if text and text.strip():
            return text.strip()
    return "Prefer the response that is more helpful, correct and harmless."


def rubric_sha256(rubric: str, orders: str = "agree") -> str:
    """Hash of the judge's whole prompt template with the rubric filled in (and of the way the
    two orders combine, when not the default): a different hash is a different judge."""
    rule = "" if orders == "agree" else f"\x00orders={orders}"
    return hashlib.sha256(f"{JUDGE_TEMPLATE}\x00{rubric}{rule}".encode()).hexdigest()


def judge_username(model_name: str, rubric_hash: str | None = None) -> str:
    """`ai-judge:<model name>` (plus `:<rubric hash>` for an LM judge), at most 64 characters;
    a long model name is cut and made unique again with a hash of the whole name."""
    suffix = f":{rubric_hash[:8]}" if rubric_hash else ""
    name = f"{JUDGE_USER_PREFIX}{model_name}{suffix}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    keep = 64 - len(JUDGE_USER_PREFIX) - len(suffix) - len(digest) - 1
    return f"{JUDGE_USER_PREFIX}{model_name[:keep]}~{digest}{suffix}"


def judge_identity(
    session: Session,
    *,
    project: Project,
    model_id: int,
    rubric_override: str | None,
    orders: str = "agree",
) -> JudgeIdentity:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise LookupError(f"model version {model_id} does not exist")
    if model.kind == ModelKind.reward:
        return JudgeIdentity("rm", model.id, model.name, judge_username(model.name))
    rubric = judge_rubric(project, rubric_override)
    digest = rubric_sha256(rubric, orders)
    return JudgeIdentity(
        "lm", model.id, model.name, judge_username(model.name, digest), rubric, digest, orders
    )


def run_judge_identity(session: Session, project: Project, config: dict[str, Any]) -> JudgeIdentity:
    """The judge a judge run's config names (its judge model, rubric override and orders)."""
    return judge_identity(
        session,
        project=project,
        model_id=config["judge_model_id"],
        rubric_override=config["rubric"],
        orders=config.get("orders", "agree"),
    )


def judge_user(session: Session, username: str) -> User:
    """The judge's user, created on first use (role judge, no usable password)."""
    session.execute(  # the other columns take their defaults
        insert_ignoring_conflicts(session, User.__table__),
        [{"username": username, "password_hash": UNUSABLE_PASSWORD, "role": Role.judge.value}],
    )
    user = session.scalars(select(User).where(User.username == username)).one()
    if user.role != Role.judge:
        raise RunError(f"the user {username!r} exists and is not an AI judge")
    return user
