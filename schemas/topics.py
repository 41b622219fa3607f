"""The topic catalogue: every topic, its key, its contract and why it exists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from schemas.base import Event
from schemas.deadletters import DeadLetter
from schemas.experiments import Experiment
from schemas.feedback import Feedback
from schemas.monitoring import Alert, DriftReport, MetricWindow, QualityWindow
from schemas.pools import PoolStatus
from schemas.prompts import LabelMove, PromptVersion
from schemas.requests import MAX_TOPIC_LEN, REPLIES_PREFIX, PromptRequest, RoutedRequest
from schemas.responses import InferenceResult, ResponseChunk

# Header names on every record we produce.
CONTENT_TYPE_HEADER = "content-type"
EVENT_TYPE_HEADER = "llmops-event"
JSON_CONTENT_TYPE = "application/json"


# Far above any topic here (12 at most) and what a Kafka cluster is sized for per topic; a
# count past it is a mistake, not a plan, and an admin request for it must never be sent.
MAX_TOPIC_PARTITIONS = 10_000


@dataclass(frozen=True)
class TopicSpec:
    """A topic of the catalogue. The bounds in the annotations are checked when a spec is
    built, so no admin request for an absurd topic is ever sent."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_LEN)]
    partitions: Annotated[int, Field(ge=1, le=MAX_TOPIC_PARTITIONS)]
    key: str
    purpose: str
    contracts: tuple[type[Event], ...]
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.name) <= MAX_TOPIC_LEN:
            raise ValueError(f"topic name of {len(self.name)} characters, not 1..{MAX_TOPIC_LEN}")
        if not 1 <= self.partitions <= MAX_TOPIC_PARTITIONS:
            raise ValueError(
                f"topic {self.name!r}: {self.partitions} partitions, "
                f"not within 1..{MAX_TOPIC_PARTITIONS}"
            )


REQUESTS = TopicSpec(
    "llm.requests",
    12,
    "sticky key (user id, else session id, else request id)",
    "apps publish prompt requests here",
    (PromptRequest,),
)
RESPONSES = TopicSpec(
    "llm.responses",
    12,
    "request id",
    "every final result, for the metrics workers",
    (InferenceResult,),
)
POOL_STATUS = TopicSpec(
    "llm.pools.status",
    1,
    "pool name",
    "pool heartbeats",
    (PoolStatus,),
    compacted=True,
)
PROMPTS = TopicSpec(
    "llm.prompts",
    1,
    "prompt name:version (versions), prompt name@label (label moves)",
    "prompt registry",
    (PromptVersion, LabelMove),
    compacted=True,
)
EXPERIMENTS = TopicSpec(
    "llm.experiments",
    1,
    "experiment name",
    "A/B experiments",
    (Experiment,),
    compacted=True,
)
FEEDBACK = TopicSpec(
    "llm.feedback",
    6,
    "request id",
    "outcomes apps report about responses (scores, thumbs, labels)",
    (Feedback,),
)
METRICS = TopicSpec(
    "llm.metrics",
    6,
    "window group",
    "closed metric and quality windows, drift results",
    (MetricWindow, QualityWindow, DriftReport),
)
ALERTS = TopicSpec("llm.alerts", 1, "alert subject", "alerts for humans and pagers", (Alert,))
DLQ = TopicSpec(
    "llm.dlq",
    3,
    "source topic",
    "input no consumer could take, with the reason",
    (DeadLetter,),
)

INFERENCE_PREFIX = "llm.inference."
INFERENCE_PARTITIONS = 12


def inference_topic(pool: str) -> TopicSpec:
    """One topic per pool; the pool's consumer group reads it."""
    return TopicSpec(
        INFERENCE_PREFIX + pool,
        INFERENCE_PARTITIONS,
        "sticky key",
        f"requests routed to pool {pool}",
        (RoutedRequest,),
    )


def inference_group(pool: str) -> str:
    """The consumer group of a pool's instances (a router's rescuer joins it when it dies)."""
    return f"llmops-inference-{pool}"


def reply_topic(client_id: str) -> TopicSpec:
    """A client's private reply topic: chunks and final results for its requests.

    Characters a topic name cannot hold (an app name may have ':' or '/') become '_', and the
    name is cut to Kafka's limit, so every client's topic is one the contract accepts."""
    suffix = re.sub(r"[^A-Za-z0-9._-]", "_", client_id)
    if suffix in ("", ".", ".."):
        suffix += "_"  # "." and ".." are not topic names
    return TopicSpec(
        (REPLIES_PREFIX + suffix)[:MAX_TOPIC_LEN],
        1,
        "request id",
        "replies for one SDK client",
        (ResponseChunk, InferenceResult),
    )


CORE_TOPICS: tuple[TopicSpec, ...] = (
    REQUESTS,
    RESPONSES,
    POOL_STATUS,
    PROMPTS,
    EXPERIMENTS,
    FEEDBACK,
    METRICS,
    ALERTS,
    DLQ,
)


# The metrics worker's internal topics: it creates them itself, so they are not in
# CORE_TOPICS, but the deployment files (infra/kafka/generate.py) and ACLs list them too.
STREAMS_APP_ID = "llmops-streams"  # the worker's default faust app id = its consumer group
RESPONSE_FEATURES_SUFFIX = "-response-features"
# Partitions of the repartition topic = the most workers that can share the window work.
RESPONSE_FEATURES_PARTITIONS = 12


def response_features_topic(app_id: str = STREAMS_APP_ID) -> TopicSpec:
    """The worker's repartition topic: each response's features keyed by its window group.

    Its records are the worker's own `ResponseFeatures` (streams/features.py), not a public
    contract, so no contract is listed."""
    return TopicSpec(
        app_id + RESPONSE_FEATURES_SUFFIX,
        RESPONSE_FEATURES_PARTITIONS,
        "window group (prompt|version|variant|pool|model)",
        "per-response features repartitioned so one worker owns each window group",
        (),
    )
