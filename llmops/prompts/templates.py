"""Prompt templates: a Jinja2 sandbox whose cost a request cannot blow up. Pure.

The sandbox already keeps template code from reaching Python internals and caps `range()`.
What it does not bound is work and memory: a request variable multiplied into a string
(`{{ q * n }}`), a loop inside a loop over request data, a macro calling itself. The router
renders on its event loop, so one such request would stall every request behind it. Here:

- at push (`check_template`): nested and recursive loops and self-calling macros are refused,
  so a template's loops are linear in its input (itself bounded by the message size);
- at render (`render_text`): `*` and `**` are bounded (a sequence repeated to at most the
  output limit, powers of at most 64 bits), the output is cut off at the contract's text
  limit, and deep recursion is an error of the request, not of the router;
- templates are compiled once per content (an LRU), not at every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment

from schemas.base import MAX_TEXT_LEN

MAX_OUTPUT_CHARS = MAX_TEXT_LEN  # a rendered message must fit a ChatMessage anyway
MAX_POWER_BITS = 64
COMPILED_CACHE = 1024


class TemplateLimit(TemplateError):
    """Rendering would take more memory or output than a prompt message can hold."""


class _BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _repeats(seq, times) > MAX_OUTPUT_CHARS:
                    raise TemplateLimit(
                        f"repeating a sequence of {len(seq)} {times} times is over the "
                        f"{MAX_OUTPUT_CHARS:,}-character limit"
                    )
        elif operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise TemplateLimit(f"{left} ** {right} is over {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _repeats(seq: Any, times: Any) -> int:
    """How long `seq * times` would be (0 when it is not a sequence repeated)."""
    if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
        return len(seq) * max(times, 0)
    return 0


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits `base ** exponent` would take for integers (0 otherwise)."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        return abs(base).bit_length() * exponent
    return 0


TEMPLATE_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=COMPILED_CACHE)
def compiled(source: str) -> Template:
    return TEMPLATE_ENV.from_string(source)


def render_text(source: str, values: Mapping[str, Any]) -> str:
    """The template rendered, at most MAX_OUTPUT_CHARS long (TemplateLimit beyond)."""
    pieces: list[str] = []
    size = 0
    try:
        for piece in compiled(source).generate(**values):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimit(f"the rendered message is over {MAX_OUTPUT_CHARS:,} characters")
            pieces.append(piece)
    except RecursionError as exc:
        raise TemplateLimit("the template recurses too deeply") from exc
    return "".join(pieces)


def costly_shapes(source: str) -> list[str]:
    """What in a (parsed) template could make its work grow faster than its input."""
    tree = TEMPLATE_ENV.parse(source)
    found: list[str] = []
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            found.append("a recursive loop")
        if any(True for _ in loop.find_all(nodes.For)):
            found.append("a loop inside a loop")
    for macro in tree.find_all(nodes.Macro):
        called = {c.node.name for c in macro.find_all(nodes.Call) if isinstance(c.node, nodes.Name)}
        if macro.name in called:
            found.append(f"macro {macro.name!r} calling itself")
    return sorted(set(found))
