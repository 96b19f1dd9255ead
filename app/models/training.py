"""Model versions, training runs, their dataset snapshots, metrics and logs, and schedules."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class ModelKind(enum.StrEnum):
    policy = "policy"  # a causal LM that writes completions (a base model is a policy too)
    reward = "reward"  # a sequence classifier with one output: the reward model


class ModelStatus(enum.StrEnum):
    ready = "ready"
    archived = "archived"


class ModelVersion(Base):
    """A registered model: where its files are, what it came from, and how it scored.

    A row is written only after the files are completely in place (see worker/training/models.py),
    so a crashed run never leaves a half-written model in the registry.
    """

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[ModelKind] = mapped_column(enum_column(ModelKind))
    status: Mapped[ModelStatus] = mapped_column(enum_column(ModelStatus), default=ModelStatus.ready)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), nullable=True
    )
    # Lineage: the version this one was trained from, and the run that trained it.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True
    )
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL", use_alter=True, name="fk_model_versions_run_id"),
        nullable=True,
    )
    # Artifact location: a local directory or any fsspec URL (s3://…). A hub id for base models.
    uri: Mapped[str] = mapped_column(Text)
    # True when `uri` holds a LoRA adapter to be applied on top of `parent`'s weights.
    is_adapter: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When `rlhf models prune` removed its files; the row stays for lineage, metrics and exports.
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RunKind(enum.StrEnum):
    sft = "sft"
    reward = "reward"
    ppo = "ppo"
    dpo = "dpo"
    generate = "generate"
    judge = "judge"  # AI feedback: label comparisons with a reward model or a prompted LM
    evaluate = "evaluate"  # RM accuracy on held-out judgments, or a policy's win rate
    score = "score"  # the reward model(s) predict each open pair's preference and uncertainty
    triage = "triage"  # the project's judge labels the pairs it is sure of; they skip the human queue


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class RunPhase(enum.StrEnum):
    """What a running run is doing (stored as text on `Run.phase`; the worker reports it)."""

    reading = "reading the snapshot"  # the runner turns the frozen ids into plain data
    loading = "loading the model"
    preparing = "preparing data"  # the trainer splits and tokenises
    training = "training"  # steps: shown as "step n of N"
    saving = "saving the model"  # publishing, registering or storing the result


class Run(Base):
    """One training (or generation) job: config, snapshot, progress, outcome."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_project_status", "project_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[RunKind] = mapped_column(enum_column(RunKind))
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), default=RunStatus.queued)
    # The resolved config (every field, defaults filled in), as it was when the run was created.
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Inputs: the model trained from (policy or base), and for PPO the reward model.
    base_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True
    )
    reward_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True
    )
    output_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True
    )
    # The run that launched this one in a scheduled chain (reward -> ppo/dpo -> generate).
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    celery_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    snapshot_size: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What a running run is doing (a RunPhase value; worker/reporter.py reports it).
    phase: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SnapshotItemKind(enum.StrEnum):
    judgment = "judgment"
    demonstration = "demonstration"
    prompt = "prompt"
    comparison = "comparison"  # the pairs a judge run labels
    ranking_judgment = "ranking_judgment"  # beside a preference run's judgments: its rankings


class RunItem(Base):
    """The frozen dataset snapshot of a run: exactly which rows it trained on."""

    __tablename__ = "run_items"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    item_kind: Mapped[SnapshotItemKind] = mapped_column(enum_column(SnapshotItemKind), primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class RunMetric(Base):
    """One logged value: `name` is namespaced (`loss/policy`, `objective/kl`, `eval/accuracy`)."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunLog(Base):
    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Schedule(Base):
    """Retrain when enough new judgments arrive: reward model -> PPO or DPO -> generate."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_new_judgments: Mapped[int] = mapped_column(Integer, default=200)
    method: Mapped[RunKind] = mapped_column(enum_column(RunKind), default=RunKind.dpo)
    # Per-kind config overrides: {"reward": {...}, "dpo": {...}, "generate": {...}}.
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Judgments with an id above this mark count as new.
    last_judgment_id: Mapped[int] = mapped_column(Integer, default=0)
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
