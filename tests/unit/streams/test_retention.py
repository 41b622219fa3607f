"""Settings.retention_days -> the ALTERs that set the text tables' TTL (pure part)."""

from __future__ import annotations

import pytest

from llmops.config import Settings
from streams.retention import TEXT_TABLES, current_ttl, retention_statements, ttl_expression

ENGINE = "ReplacingMergeTree(inserted_at) ORDER BY request_id SETTINGS index_granularity = 8192"
ENGINE_30 = (
    "ReplacingMergeTree(inserted_at) ORDER BY request_id TTL inserted_at + toIntervalDay(30) "
    "SETTINGS index_granularity = 8192"
)


def test_the_ttl_is_read_back_from_engine_full() -> None:
    assert current_ttl(ENGINE) is None
    assert current_ttl(ENGINE_30) == "inserted_at + toIntervalDay(30)"
    assert current_ttl("MergeTree ORDER BY x TTL ts + toIntervalDay(7)") == "ts + toIntervalDay(7)"


def test_a_table_already_at_the_setting_is_left_alone() -> None:
    assert retention_statements({"responses": ENGINE_30}, 30) == []
    assert retention_statements({"responses": ENGINE}, 0) == []


def test_a_different_ttl_is_modified_and_zero_removes_it() -> None:
    assert retention_statements({"responses": ENGINE_30, "requests": ENGINE}, 7) == [
        "ALTER TABLE `requests` MODIFY TTL inserted_at + INTERVAL 7 DAY",
        "ALTER TABLE `responses` MODIFY TTL inserted_at + INTERVAL 7 DAY",
    ]
    # A TTL on another column (say ts, set by hand) is brought to the setting too.
    assert retention_statements(
        {"responses": ENGINE.replace("SETTINGS", "TTL ts + toIntervalDay(30) SETTINGS")}, 30
    ) == ["ALTER TABLE `responses` MODIFY TTL inserted_at + INTERVAL 30 DAY"]
    assert retention_statements({"responses": ENGINE_30}, 0) == [
        "ALTER TABLE `responses` REMOVE TTL"
    ]


def test_the_setting_is_bounded_and_defaults_to_thirty_days() -> None:
    assert Settings().retention_days == 30
    assert ttl_expression(Settings().retention_days) == "inserted_at + toIntervalDay(30)"
    with pytest.raises(ValueError):
        Settings(retention_days=-1)
    with pytest.raises(ValueError):
        Settings(retention_days=10**9)
    with pytest.raises(ValueError):
        ttl_expression(-1)


def test_the_text_tables_are_the_ones_holding_text() -> None:
    assert set(TEXT_TABLES) == {"requests", "responses", "dead_letters", "judgements"}
