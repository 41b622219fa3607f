-- Quality aggregates of closed tumbling windows (schemas/monitoring.py QualityWindow): one row
-- per window, (prompt, version, variant, pool, model) and segment ("" = the whole group,
-- "locale=de" = the responses whose request carried that attribute value, "locale=(other)"
-- = the values past Settings.segment_max_values). Everything merges across rows: rates as
-- hits of totals (rate_low/rate_high: their Wilson 95% interval), distributions as base64
-- KLL sketches (Apache DataSketches kll_floats_sketch, k=200) with [p50, p90, p95, p99]
-- read from each, samples as bottom-k by request-id hash (sample_hashes, parallel to
-- sample), the embedding centroid as embedding_sum / embedded. A window re-emitted after a
-- restart or rebalance has the same key and replaces its row (ReplacingMergeTree by
-- inserted_at: the latest insert wins; query with FINAL).
CREATE TABLE IF NOT EXISTS quality_windows
(
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    variant LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    segment String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    responses UInt64,
    errors UInt64,
    rate_totals Map(LowCardinality(String), UInt64),
    rate_hits Map(LowCardinality(String), UInt64),
    rate_low Map(LowCardinality(String), Float64),
    rate_high Map(LowCardinality(String), Float64),
    quantiles Map(LowCardinality(String), Array(Float64)),
    sketches Map(LowCardinality(String), String),
    sample Map(LowCardinality(String), Array(Float64)),
    sample_hashes Map(LowCardinality(String), Array(UInt64)),
    categories Map(LowCardinality(String), Map(String, UInt64)),
    embedding_sum Array(Float64),
    embedded UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, prompt_name, prompt_version, variant, pool, model, segment);
