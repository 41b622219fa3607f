"""The template sandbox's bounds: what a request or a careless template can make rendering
cost. The router renders on its event loop, so each of these would stall it unbounded."""

from __future__ import annotations

import pytest

from llmops.prompts.content import PromptFileError, drafts_from_text
from llmops.prompts.registry import PromptError, render
from llmops.prompts.templates import (
    MAX_OUTPUT_CHARS,
    TemplateLimit,
    compiled,
    costly_shapes,
    render_text,
)
from schemas import ChatMessage, PromptVersion


def version(content: str, variables: dict[str, object] | None = None) -> PromptVersion:
    return PromptVersion(
        name="t",
        version=1,
        messages=[ChatMessage(role="user", content=content)],
        variables=variables or {},
    )


@pytest.mark.parametrize(
    ("source", "shape"),
    [
        ("{% for a in x %}{% for b in x %}.{% endfor %}{% endfor %}", "a loop inside a loop"),
        ("{% for a in x recursive %}{{ loop(a) }}{% endfor %}", "a recursive loop"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macro 'f' calling itself"),
    ],
)
def test_costly_shapes_are_named(source: str, shape: str) -> None:
    assert shape in costly_shapes(source)


@pytest.mark.parametrize(
    "source",
    [
        "Hello {{ name }}",
        "{% for d in docs %}- {{ d }}\n{% endfor %}{% for t in tips %}{{ t }}{% endfor %}",
        "{% macro item(x) %}<{{ x }}>{% endmacro %}{% for d in docs %}{{ item(d) }}{% endfor %}",
        "{% if a %}{{ a * 3 }}{% endif %}",
    ],
)
def test_linear_templates_have_no_costly_shape(source: str) -> None:
    assert costly_shapes(source) == []


def test_a_push_refuses_a_loop_inside_a_loop_naming_the_file() -> None:
    text = (
        "name: x\nvariables: {q: string}\nmessages:\n  - role: user\n"
        "    content: '{% for a in q %}{% for b in q %}.{% endfor %}{% endfor %}'\n"
    )
    with pytest.raises(PromptFileError, match=r"bad\.yaml: message 1 has a loop inside a loop"):
        drafts_from_text(text, "bad.yaml")


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{{ q * n }}", {"q": "ab", "n": MAX_OUTPUT_CHARS}),  # a request's variables
        ("{{ n * q }}", {"q": "ab", "n": MAX_OUTPUT_CHARS}),
        ("{{ [1] * n }}", {"n": 10**12}),
        ("{{ 10 ** n }}", {"n": 10**9}),
        ("{% for i in range(99999) %}{{ q }}{% endfor %}", {"q": "x" * 1000}),
    ],
)
def test_rendering_is_bounded_in_memory_and_output(source: str, values: dict[str, object]) -> None:
    with pytest.raises(TemplateLimit):
        render_text(source, values)


def test_small_products_and_powers_still_work() -> None:
    assert render_text("{{ q * 3 }}|{{ 2 ** 10 }}|{{ 3 * 4 }}|{{ 1.5 * 2 }}", {"q": "ab"}) == (
        "ababab|1024|12|3.0"
    )


def test_a_bound_is_the_requests_error_not_the_routers() -> None:
    v = version("{{ q * n }}", {"q": {"type": "string"}, "n": {"type": "int"}})
    with pytest.raises(PromptError, match="character limit"):
        render(v, {"q": "abc", "n": str(10**9)})
    deep = version("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}")  # only from the topic
    with pytest.raises(PromptError, match="recurses too deeply"):
        render(deep, {})


def test_templates_are_compiled_once_per_content() -> None:
    assert compiled("Hi {{ x }}") is compiled("Hi {{ x }}")
    assert render(version("Hi {{ x }}"), {"x": "a"})[0].content == "Hi a"
