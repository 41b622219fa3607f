"""`llmops send --var NAME=VALUE`: the prompt variables it sends."""

from __future__ import annotations

import pytest

from llmops.cli.errors import Mistake
from llmops.cli.send import parse_variables


def test_pairs_become_a_mapping() -> None:
    assert parse_variables([]) == {}
    assert parse_variables(["product=lamp", "question=why?"]) == {
        "product": "lamp",
        "question": "why?",
    }


def test_the_value_keeps_its_own_equals_signs_and_may_be_empty() -> None:
    assert parse_variables(["sql=a = b", "empty="]) == {"sql": "a = b", "empty": ""}


def test_a_later_name_wins() -> None:
    assert parse_variables(["n=1", "n=2"]) == {"n": "2"}


@pytest.mark.parametrize("pair", ["product", "=lamp", ""])
def test_a_pair_without_a_name_or_equals_is_a_mistake(pair: str) -> None:
    with pytest.raises(Mistake, match="give it as NAME=VALUE"):
        parse_variables([pair])
