-- Closed tumbling windows of per-response metrics (schemas/operations.py MetricWindow), one
-- row per window and (prompt, version, variant, pool, model). A window re-emitted after a
-- restart has the same key and replaces the earlier row (ReplacingMergeTree by inserted_at:
-- the latest insert wins; query with FINAL). The partition follows window_start, part of
-- the key, so a replay always meets the row it replaces.
CREATE TABLE IF NOT EXISTS metric_windows
(
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    variant LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    event_id String,
    ts DateTime64(3, 'UTC'),
    requests UInt64,
    errors UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cost_usd Float64,
    latency_p50_ms Float64,
    latency_p95_ms Float64,
    latency_p99_ms Float64,
    ttft_p50_ms Float64,
    ttft_p95_ms Float64,
    output_chars_mean Float64,
    finish_reasons Map(LowCardinality(String), UInt64),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, prompt_name, prompt_version, variant, pool, model);
