"""Which responses are judged, and the judge requests for them. Pure.

A judge request is an ordinary PromptRequest for the router: model = the judge model (the
router picks its pool), app JUDGE_APP, the judged response's tenant, and two attributes that
say what it judges: JUDGED_REQUEST (the judged request id) and JUDGE_CHECK. Its request id is
uuid5 of the judged request id and the check, so a replayed response sends the same request
again (the router, the pool and the tables are idempotent by request id), never a second one.

A response is a verdict (`is_verdict`) when its attributes name a judged request and a check
and its request id is the one derived from them. A verdict is never judged, never run through
the detectors and never counted in the windows. Tying the id to the attributes bounds what an
app could escape by setting the attribute on its own requests: such a response is judged and
counted like any other unless its request id is exactly the derived one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from schemas import InferenceResult, PromptRequest
from schemas.requests import SamplingParams
from streams.judge.rubrics import applies, judge_messages, rubric
from streams.sampling import sampled

if TYPE_CHECKING:
    from llmops.config import Settings

JUDGE_APP: Final = "llmops-judge"
JUDGED_REQUEST: Final = "llmops.judge_of"
JUDGE_CHECK: Final = "llmops.judge_check"
# Enough for a sentence of reasoning and the two verdict lines.
JUDGE_MAX_TOKENS: Final = 96
_NAME: Final = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}")  # schemas.base.Name
# Fixed forever: changing it would give a replayed response a second judge request.
_NAMESPACE: Final = uuid.UUID("5b0f3c1e-8a57-4c8e-9d2b-6f1d0a3e7c41")


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """Settings.judge_model, judge_sample_rate and judge_checks, checked."""

    model: str = ""  # "" = off
    sample_rate: float = 0.0
    checks: tuple[str, ...] = ()
    max_tokens: int = JUDGE_MAX_TOKENS

    def __post_init__(self) -> None:
        if self.model and _NAME.fullmatch(self.model) is None:
            raise ValueError(f"judge model {self.model[:64]!r} is not a model name")
        for check in self.checks:
            rubric(check)  # raises UnknownCheckError
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"judge sample rate must be within 0..1, not {self.sample_rate}")
        if not 1 <= self.max_tokens <= 8192:
            raise ValueError(f"judge max_tokens must be within 1..8192, not {self.max_tokens}")

    @classmethod
    def from_settings(cls, settings: Settings) -> JudgeConfig:
        return cls(
            settings.judge_model,
            settings.judge_sample_rate,
            tuple(dict.fromkeys(settings.judge_checks)),
        )

    @property
    def on(self) -> bool:
        return bool(self.model) and self.sample_rate > 0.0 and bool(self.checks)


def judge_request_id(request_id: str, check: str) -> str:
    """The judge request's id for `check` of `request_id`: the same on every replay.
    uuid5 (RFC 4122: SHA-1 of the namespace and the name), the name encoded so that an id
    holding a lone surrogate still has one."""
    name = f"{request_id}\x00{check}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha1(_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5).hex


def judged_of(result: InferenceResult) -> tuple[str, str] | None:
    """(judged request id, check) when `result` is a verdict, else None (module docstring)."""
    judged = result.attributes.get(JUDGED_REQUEST)
    check = result.attributes.get(JUDGE_CHECK)
    if judged is None or check is None:
        return None
    return (judged, check) if result.request_id == judge_request_id(judged, check) else None


def is_verdict(result: InferenceResult) -> bool:
    return judged_of(result) is not None


def should_judge(result: InferenceResult, config: JudgeConfig) -> bool:
    """An app response in the sample: never a verdict, never an error, never empty."""
    return (
        config.on
        and result.ok
        and bool(result.text.strip())
        and not is_verdict(result)
        and sampled(result.request_id, config.sample_rate)
    )


def judge_requests(result: InferenceResult, config: JudgeConfig) -> list[PromptRequest]:
    """The judge requests for `result`: one per configured check that applies to it (none
    when it is not to be judged)."""
    if not should_judge(result, config):
        return []
    return [
        _request(result, check, config) for check in config.checks if applies(check, result.context)
    ]


def _request(result: InferenceResult, check: str, config: JudgeConfig) -> PromptRequest:
    return PromptRequest(
        request_id=judge_request_id(result.request_id, check),
        tenant=result.tenant,
        app=JUDGE_APP,
        messages=judge_messages(check, result.prompt_text or "", result.text, result.context),
        model=config.model,
        sampling=SamplingParams(max_tokens=config.max_tokens, temperature=0.0),
        attributes={JUDGED_REQUEST: result.request_id, JUDGE_CHECK: check},
    )
