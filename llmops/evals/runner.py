"""Sends a suite's cases through the platform: each case x repeat is a real PromptRequest on
llm.requests (router, pool, reply topic), for one prompt version or two on the same cases.

- The prompt is referenced by name and version or label (PromptRef), so the router resolves it
  as for any app; the version that actually answered is read from each result
  (InferenceResult.prompt_version), so `@production` records what ran.
- Repeat r of every case asks for sampling seed `seed + r`: each repeat is its own sample, and
  the two versions of a comparison get the same seeds (paired). Each request has its own
  request id, so nothing is served from what an earlier request produced.
- At most `concurrency` cases are in flight (a judge request is sent in its case's slot).
- What the assertions read besides the text is measured through `Probes`, which the entry point
  builds from the layers above (llmops.evals is a domain: it never imports streams/): detector
  signals, embeddings for the similarity to the reference, and a `Grader` that writes the judge
  model's prompt and reads its verdict. A probe that is missing leaves its assertions unjudged
  (they fail and say so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from llmops.evals.assertions import Grade, Result, RubricParams
from llmops.evals.scoring import Scored, SuiteSummary, score_result, summarize
from llmops.evals.suite import Case, Suite
from llmops.sdk import LLMOpsClient, ReplyTimeout
from schemas import ChatMessage, InferenceResult, utc_now
from schemas.prompts import parse_prompt_address
from schemas.requests import EVAL_APP

log = logging.getLogger(__name__)
RUN_ATTRIBUTE = "llmops.eval_run"
CASE_ATTRIBUTE = "llmops.eval_case"
REPEAT_ATTRIBUTE = "llmops.eval_repeat"
MAX_REPEAT = 1000
MAX_CONCURRENCY = 1024
REPEAT_TEMPERATURE = 0.7  # repeats with no temperature given: sampled, or every one is alike
JUDGE_MAX_TOKENS = 96  # a sentence of reasoning and the verdict lines


class TargetError(ValueError):
    """A prompt reference that is not NAME@VERSION or NAME@LABEL."""


@dataclass(frozen=True, slots=True)
class PromptTarget:
    """The prompt a run sends: its name and a pinned version or a label."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> PromptTarget:
        try:
            address = parse_prompt_address(text, at_required=True)
        except ValueError as exc:
            raise TargetError(str(exc)) from None
        return cls(address.name, version=address.version, label=address.label)

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.label}"


class Grader(Protocol):
    """Writes the judge model's prompt for a rubric and reads the grade from its reply."""

    def messages(
        self,
        rubric: RubricParams,
        question: str,
        answer: str,
        context: str | None,
        reference: str | None,
    ) -> list[ChatMessage]: ...

    def parse(self, text: str) -> Grade: ...


Signals = Callable[[str, str, str | None], Mapping[str, float]]  # (prompt, output, context)
Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]  # unit or not: cosine is taken


@dataclass(frozen=True, slots=True)
class Probes:
    signals: Signals | None = None
    embed: Embed | None = None
    grader: Grader | None = None
    judge_model: str | None = None  # a rubric's judge when it names none


@dataclass(frozen=True, slots=True)
class RunConfig:
    repeat: int = 1
    concurrency: int = 32
    seed: int = 0
    temperature: float | None = None  # None: the suite's, else 0 (REPEAT_TEMPERATURE if K > 1)
    max_tokens: int | None = None  # None: the suite's, else the platform's default
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise ValueError(f"repeat must be within 1..{MAX_REPEAT}, not {self.repeat}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be within 1..{MAX_CONCURRENCY}")
        if not 0 < self.timeout_s <= 3600:
            raise ValueError("timeout must be within 0..3600 s")

    def seed_of(self, repeat: int) -> int:
        return self.seed + repeat

    def sampling(self, suite: Suite) -> dict[str, Any]:
        """The sampling every request of the run asks for (the seed comes per repeat)."""
        temperature = self.temperature
        if temperature is None:
            temperature = suite.sampling.temperature
        if temperature is None:
            temperature = REPEAT_TEMPERATURE if self.repeat > 1 else 0.0
        out: dict[str, Any] = {"temperature": temperature}
        max_tokens = self.max_tokens or suite.sampling.max_tokens
        if max_tokens is not None:
            out["max_tokens"] = max_tokens
        if suite.sampling.top_p is not None:
            out["top_p"] = suite.sampling.top_p
        return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One case x repeat as it ran and was judged."""

    target: PromptTarget
    case_id: str
    repeat: int
    seed: int
    request_id: str
    result: Result
    scored: Scored
    prompt_version: int | None  # None: no version answered (an error before routing)
    model: str
    pool: str


@dataclass
class VersionRun:
    """One prompt target's run of the suite."""

    target: PromptTarget
    run_id: str
    samples: list[Sample]
    summary: SuiteSummary
    started_at: datetime
    finished_at: datetime

    @property
    def versions(self) -> tuple[int, ...]:
        """The versions that answered (more than one: a label moved during the run)."""
        return tuple(sorted({s.prompt_version for s in self.samples if s.prompt_version}))

    @property
    def passed(self) -> bool:
        """The gate: the suite passed, all on one version."""
        return self.summary.passed and len(self.versions) == 1

    @property
    def scored(self) -> list[Scored]:
        return [s.scored for s in self.samples]


SchemaOf = Callable[[int], Mapping[str, Any] | None]  # a version -> its response schema


@dataclass
class SuiteRunner:
    """Runs a suite for one or more targets through `client` (an open LLMOpsClient)."""

    client: LLMOpsClient
    suite: Suite
    config: RunConfig = field(default_factory=RunConfig)
    probes: Probes = field(default_factory=Probes)
    schema_of: SchemaOf = lambda _version: None
    on_sample: Callable[[Sample], None] = lambda _sample: None

    @property
    def total(self) -> int:
        """Requests per target (judge requests not counted)."""
        return len(self.suite.cases) * self.config.repeat

    async def run(self, targets: Sequence[PromptTarget]) -> list[VersionRun]:
        """Every target on every case and repeat, interleaved under one concurrency bound."""
        slots = asyncio.Semaphore(self.config.concurrency)
        sampling = self.config.sampling(self.suite)
        run_ids = [uuid.uuid4().hex for _ in targets]
        started = utc_now()

        async def one(index: int, case: Case, repeat: int) -> tuple[int, Sample]:
            async with slots:
                sample = await self._sample(targets[index], run_ids[index], case, repeat, sampling)
            self.on_sample(sample)
            return index, sample

        jobs = [
            one(index, case, repeat)
            for repeat in range(self.config.repeat)
            for case in self.suite.cases
            for index in range(len(targets))
        ]
        done = await asyncio.gather(*jobs)
        finished = utc_now()
        runs = []
        for index, target in enumerate(targets):
            samples = [s for i, s in done if i == index]
            summary = summarize(self.suite, [s.scored for s in samples])
            runs.append(VersionRun(target, run_ids[index], samples, summary, started, finished))
        return runs

    async def _sample(
        self,
        target: PromptTarget,
        run_id: str,
        case: Case,
        repeat: int,
        sampling: Mapping[str, Any],
    ) -> Sample:
        seed = self.config.seed_of(repeat)
        variables = {k: _as_text(v) for k, v in self.suite.variables_of(case).items()}
        request_id = uuid.uuid4().hex
        try:
            request = self.client.build_request(
                prompt=target.name,
                version=target.version,
                label=target.label,
                variables=variables,
                context=case.context,
                app=EVAL_APP,
                attributes={
                    RUN_ATTRIBUTE: run_id,
                    CASE_ATTRIBUTE: case.id[:256],
                    REPEAT_ATTRIBUTE: str(repeat),
                },
                seed=seed,
                timeout_s=self.config.timeout_s,
                request_id=request_id,
                **sampling,
            )
        except ValueError as exc:  # the case cannot be a request (pydantic's ValidationError)
            why = f"invalid request: {_first_line(exc)}"
            reply: InferenceResult | str = why
            result = Result("", error=why)
        else:
            sent = time.monotonic()
            reply = await self._ask(request)
            latency_ms = (time.monotonic() - sent) * 1000.0
            result = await self._measure(case, reply, latency_ms)
        version = reply.prompt_version if isinstance(reply, InferenceResult) else None
        schema = self.schema_of(version) if version is not None else None
        scored = score_result(self.suite, case, result, repeat, schema)
        return Sample(
            target,
            case.id,
            repeat,
            seed,
            request_id,
            result,
            scored,
            version,
            (reply.model or "") if isinstance(reply, InferenceResult) else "",
            (reply.pool or "") if isinstance(reply, InferenceResult) else "",
        )

    async def _ask(self, request: Any) -> InferenceResult | str:
        """The final result, or why none came (a timeout, a failed send)."""
        try:
            pending = await self.client.submit(request)
            return await self.client.wait(request.request_id, pending, self.config.timeout_s)
        except ReplyTimeout as exc:
            return f"timeout: {exc}"
        except (OSError, RuntimeError) as exc:  # the send failed (broker gone, too large)
            return f"not sent: {type(exc).__name__}: {exc}"

    async def _measure(self, case: Case, reply: InferenceResult | str, latency_ms: float) -> Result:
        if isinstance(reply, str):
            return Result("", error=reply, latency_ms=latency_ms)
        if reply.error is not None:
            return Result(
                reply.text,
                error=f"{reply.error.kind}: {reply.error.message}",
                latency_ms=latency_ms,
            )
        output = reply.text
        signals: Mapping[str, float] = {}
        if self.probes.signals is not None:
            signals = _guarded(
                self.probes.signals, {}, reply.prompt_text or "", output, case.context
            )
        specs = [s.build() for s in self.suite.assertions_of(case)]
        similarity = None
        wants_similarity = any(s.type == "similarity" for s in specs)
        if case.reference is not None and self.probes.embed is not None and wants_similarity:
            similarity = await asyncio.to_thread(
                _guarded, _similarity, None, self.probes.embed, output, case
            )
        rubrics = {s.params.key: s.params for s in specs if isinstance(s.params, RubricParams)}
        grades = {key: await self._grade(p, case, reply) for key, p in rubrics.items()}
        return Result(
            output,
            latency_ms=latency_ms,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cost_usd=reply.cost_usd,
            similarity=similarity,
            signals=dict(signals),
            grades=grades,
        )

    async def _grade(self, rubric: RubricParams, case: Case, reply: InferenceResult) -> Grade:
        """The judge model's grade of the answer: a normal request through the platform."""
        grader = self.probes.grader
        if grader is None:
            return Grade(None, None, "no judge is configured")
        try:
            messages = grader.messages(
                rubric, reply.prompt_text or "", reply.text, case.context, case.reference
            )
            request = self.client.build_request(
                messages,
                model=rubric.model or self.probes.judge_model or None,
                app=EVAL_APP,
                attributes={RUN_ATTRIBUTE: "judge", CASE_ATTRIBUTE: case.id[:256]},
                temperature=0.0,
                max_tokens=JUDGE_MAX_TOKENS,
                timeout_s=self.config.timeout_s,
            )
        except Exception as exc:  # a grader bug or an unsendable prompt fails this grade only
            return Grade(None, None, f"judge request not made: {_first_line(exc)}"[:300])
        answer = await self._ask(request)
        if isinstance(answer, str):
            return Grade(None, None, f"judge request failed: {answer}"[:300])
        if answer.error is not None:
            return Grade(None, None, f"judge request failed: {answer.error.kind}")
        return _guarded(
            grader.parse, Grade(None, None, "the verdict could not be read"), answer.text
        )


T = TypeVar("T")


def _guarded(probe: Callable[..., T], failed: T, *args: Any) -> T:
    """What a probe measures, or `failed` when it breaks (its assertions are then unjudged and
    say so): one broken measurement must not stop the suite."""
    try:
        return probe(*args)
    except Exception:
        log.warning("probe %s failed", getattr(probe, "__name__", probe), exc_info=True)
        return failed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _as_text(value: str | int | float | bool) -> str:
    """A suite variable as a request carries it: JSON's spelling for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _similarity(embed: Embed, output: str, case: Case) -> float | None:
    assert case.reference is not None
    vectors = embed([output, case.reference])
    a, b = (list(map(float, v)) for v in vectors)
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(x * x for x in b))
    if na < 1e-12 or nb < 1e-12:
        return None
    return max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)))
