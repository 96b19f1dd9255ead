"""The tables. Importing this package registers all of them on `Base.metadata`."""

from app.db import Base
from app.models.api_token import ApiToken
from app.models.audit import AuditEvent
from app.models.comparison import (
    Assignment,
    AssignmentStatus,
    Choice,
    Comparison,
    ComparisonKind,
    Judgment,
    JudgmentSource,
    TriageState,
)
from app.models.demonstration import Demonstration, DemonstrationSource, ReviewStatus
from app.models.membership import ApiTokenProject, ProjectMember, RaterGroup, RaterGroupMember
from app.models.project import Project, Scale, SelectionStrategy, Visibility
from app.models.prompt import Completion, Prompt
from app.models.ranking import Ranking, RankingAssignment, RankingJudgment
from app.models.tallies import ComparisonTally, RaterFlagTally, RaterHour, RaterPairTally, RaterTally
from app.models.training import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    Run,
    RunItem,
    RunKind,
    RunLog,
    RunMetric,
    RunPhase,
    RunStatus,
    Schedule,
    SnapshotItemKind,
)
from app.models.user import LoginFailure, Role, User
from app.models.worker import Worker
from app.models.writing import DemonstrationReview, Draft, WritingAssignment, WritingKind, WritingTask

__all__ = [
    "ModelKind",
    "ModelStatus",
    "ModelVersion",
    "Run",
    "RunItem",
    "RunKind",
    "RunLog",
    "RunMetric",
    "RunPhase",
    "RunStatus",
    "Schedule",
    "SnapshotItemKind",
    "ApiToken",
    "AuditEvent",
    "ApiTokenProject",
    "Assignment",
    "AssignmentStatus",
    "Base",
    "Choice",
    "Comparison",
    "ComparisonKind",
    "ComparisonTally",
    "Completion",
    "Demonstration",
    "DemonstrationReview",
    "DemonstrationSource",
    "Draft",
    "Judgment",
    "JudgmentSource",
    "LoginFailure",
    "Project",
    "ProjectMember",
    "Prompt",
    "ReviewStatus",
    "RaterGroup",
    "RaterGroupMember",
    "Ranking",
    "RankingAssignment",
    "RankingJudgment",
    "RaterFlagTally",
    "RaterHour",
    "RaterPairTally",
    "RaterTally",
    "Role",
    "Scale",
    "SelectionStrategy",
    "TriageState",
    "User",
    "Visibility",
    "Worker",
    "WritingAssignment",
    "WritingKind",
    "WritingTask",
]
