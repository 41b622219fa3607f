"""The platform the suite tests run on: the real broker, the router and three pools in process.

- `echo-pool` (model `echo`): the fake engine, whose answer is the prompt's words cycled from
  the seed's position (services/inference/engines/fake.py), so a case's verdict per seed is
  known exactly: "Hello {{ name }}" answers "Hello Ada" at seed 0 and "Ada Hello" at seed 1.
- `tiny-pool` (model `tiny-random`): the transformers engine on the tiny random Llama
  (tests/engine_kit.py; built in milliseconds), real seeded sampling.
- `judge-pool` (model `judge`): a judge that reads the <answer> it is asked to grade and passes
  it when it greets ("Hello"), writing the two verdict lines the rubric asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmops.config import FakePool, TransformersPool
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from services.inference.engines.base import GenerationChunk, GenerationRequest
from services.inference.engines.fake import FakeEngine
from services.inference.engines.text import render_plain
from services.inference.engines.transformers_engine import TransformersEngine
from services.inference.models import build_tiny_model, build_tiny_tokenizer
from tests.engine_kit import TINY_CONFIG

ECHO, TINY, JUDGE = "echo", "tiny-random", "judge"
# A prompt with a response schema: the echo engine answers its one-word payload (max_tokens 1).
JSON_PROMPT = "evals-json-answer"
ANSWER_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}},
}
PROMPTS = {
    "prompts": [
        {
            "name": "greeter",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "model": ECHO,
                    "messages": [{"role": "user", "content": "Hello {{ name }}"}],
                },
                {
                    "version": 2,
                    "labels": ["candidate"],
                    "model": ECHO,
                    "messages": [{"role": "user", "content": "Bye {{ name }}"}],
                },
            ],
        },
        {
            "name": JSON_PROMPT,
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "model": ECHO,
                    "response_schema": ANSWER_SCHEMA,
                    "messages": [{"role": "user", "content": "{{ payload }}"}],
                },
            ],
        },
        {
            "name": "tiny-talk",
            "versions": [
                {
                    "version": 3,
                    "labels": ["production"],
                    "model": TINY,
                    "messages": [{"role": "user", "content": "Tell me about {{ topic }}."}],
                },
            ],
        },
    ]
}


def prompt_set() -> PromptSet:
    return prompt_set_from_data(PROMPTS)


class GreetingJudge(FakeEngine):
    """Grades the answer it is shown: PASS (score 5) when it holds "Hello", else FAIL (1)."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt = render_plain(request.messages)
        answer = prompt.rsplit("<answer>", 1)[-1].split("</answer>", 1)[0]
        ok = "Hello" in answer
        text = (
            f"The answer {'greets' if ok else 'does not greet'}.\n"
            f"SCORE: {5 if ok else 1}\nVERDICT: {'PASS' if ok else 'FAIL'}"
        )
        yield GenerationChunk(text, len(prompt.split()), 8, "stop")


def pools_and_engines(suffix: str) -> tuple[list[FakePool | TransformersPool], dict[str, object]]:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    echo = FakePool(name=f"echo-{suffix}", model=ECHO)
    judge = FakePool(name=f"judge-{suffix}", model=JUDGE)
    tiny = TransformersPool(name=f"tiny-{suffix}", model=TINY, capacity=16)
    engines: dict[str, object] = {
        echo.name: FakeEngine(model=ECHO),
        judge.name: GreetingJudge(model=JUDGE),
        tiny.name: TransformersEngine(TINY, lambda: (model, tokenizer), TINY_CONFIG),
    }
    return [echo, judge, tiny], engines
