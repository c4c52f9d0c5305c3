"""The events SmartGym services publish to each other: the published language.

Services cannot import each other, so their contract lives in this package, one module
per domain; the kernel (``common``) only knows how an event travels, never which events
exist. A new service adds its module here and one import line below. Each class is one
version of one event; see :mod:`common.events.envelope` for the rules.
"""

from contracts.access import AccessDenied, AccessGranted, EntryMethod, GateStatusChanged
from contracts.branches import (
    BranchInfoCreated,
    BranchInfoUpdated,
    BranchPreferenceCreated,
    OpeningHours,
    Price,
    ReviewPosted,
)
from contracts.catalog import CATALOG
from contracts.equipment import (
    Criticality,
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentFaultWithdrawn,
    EquipmentOutageEvent,
    EquipmentRecovered,
)
from contracts.identity import (
    ACCESS_HOURS_PATTERN,
    FACE_TRANSIT_PURPOSE,
    DeviceRevoked,
    FaceEnrolled,
    FaceErased,
    MembershipChanged,
    PasswordResetRequested,
    PasswordResetRequestedV2,
    UserDeleted,
    UserRegistered,
)
from contracts.models import (
    ModelDeployed,
    ModelFamily,
    ModelSignalReported,
    ModelSwapReported,
    PackFile,
    TrainingRequested,
)
from contracts.running import (
    FriendRequestAccepted,
    OutingEnded,
    OutingInvited,
    OutingStarted,
    RaceFinished,
    RacePlacing,
    RunFinished,
    RunStarted,
    StepGoalReached,
    StepRankChanged,
)
from contracts.tasks import (
    PayoutStatusChanged,
    PhotoRef,
    TaskConfirmed,
    TaskJudged,
    TaskJudgedV2,
    TaskReviewOverdue,
    TaskSubmitted,
    VerdictReason,
)

__all__ = [
    "ACCESS_HOURS_PATTERN",
    "CATALOG",
    "FACE_TRANSIT_PURPOSE",
    "AccessDenied",
    "AccessGranted",
    "BranchInfoCreated",
    "BranchInfoUpdated",
    "BranchPreferenceCreated",
    "Criticality",
    "DeviceRevoked",
    "EntryMethod",
    "EquipmentFault",
    "EquipmentFaultEscalated",
    "EquipmentFaultWithdrawn",
    "EquipmentOutageEvent",
    "EquipmentRecovered",
    "FaceEnrolled",
    "FaceErased",
    "FriendRequestAccepted",
    "GateStatusChanged",
    "MembershipChanged",
    "ModelDeployed",
    "ModelFamily",
    "ModelSignalReported",
    "ModelSwapReported",
    "OpeningHours",
    "OutingEnded",
    "OutingInvited",
    "OutingStarted",
    "PackFile",
    "PasswordResetRequested",
    "PasswordResetRequestedV2",
    "PayoutStatusChanged",
    "PhotoRef",
    "Price",
    "RaceFinished",
    "RacePlacing",
    "ReviewPosted",
    "RunFinished",
    "RunStarted",
    "StepGoalReached",
    "StepRankChanged",
    "TaskConfirmed",
    "TaskJudged",
    "TaskJudgedV2",
    "TaskReviewOverdue",
    "TaskSubmitted",
    "TrainingRequested",
    "UserDeleted",
    "UserRegistered",
    "VerdictReason",
]
