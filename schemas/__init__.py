"""Wire contracts of llmops-streams. Data only: imports nothing of ours."""

from schemas.base import SCHEMA_VERSION, Contract, Event, new_id, utc_now
from schemas.deadletters import DeadLetter, DeadLetterKind
from schemas.experiments import Experiment, Variant
from schemas.feedback import Feedback
from schemas.monitoring import Alert, DriftReport, MetricWindow, QualityWindow
from schemas.pools import PoolPhase, PoolStatus
from schemas.prompts import LabelMove, PromptVersion
from schemas.requests import ChatMessage, PromptRef, PromptRequest, RoutedRequest, SamplingParams
from schemas.responses import (
    ErrorInfo,
    ErrorKind,
    FinishReason,
    InferenceResult,
    ResponseChunk,
    Timings,
    Usage,
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        PromptRequest,
        RoutedRequest,
        ResponseChunk,
        InferenceResult,
        PoolStatus,
        PromptVersion,
        LabelMove,
        Experiment,
        Feedback,
        MetricWindow,
        QualityWindow,
        DriftReport,
        Alert,
        DeadLetter,
    )
}

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Alert",
    "ChatMessage",
    "Contract",
    "DeadLetter",
    "DeadLetterKind",
    "DriftReport",
    "ErrorInfo",
    "ErrorKind",
    "Event",
    "Experiment",
    "Feedback",
    "FinishReason",
    "InferenceResult",
    "LabelMove",
    "MetricWindow",
    "PoolPhase",
    "PoolStatus",
    "PromptRef",
    "PromptRequest",
    "PromptVersion",
    "QualityWindow",
    "ResponseChunk",
    "RoutedRequest",
    "SamplingParams",
    "Timings",
    "Usage",
    "Variant",
    "new_id",
    "utc_now",
]
