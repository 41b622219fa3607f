-- Every InferenceResult (schemas/responses.py), one row per request_id. usage.*, timings.*
-- and error.* are flattened (input_tokens, output_tokens; queue_ms, ttft_ms, tpot_ms,
-- total_ms; error_kind, error_message). A replayed result is produced again with a new ts,
-- so ts is neither in the key nor in a partition key: ReplacingMergeTree collapses the
-- replay by request_id alone (query with FINAL for exact counts).
CREATE TABLE IF NOT EXISTS responses
(
    request_id String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    engine LowCardinality(String),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    experiment LowCardinality(String),
    variant LowCardinality(String),
    route_reason String,
    finish_reason LowCardinality(String),
    error_kind LowCardinality(String),
    error_message String,
    input_tokens UInt32,
    output_tokens UInt32,
    queue_ms Float64,
    ttft_ms Float64,
    tpot_ms Float64,
    total_ms Float64,
    output_chars UInt32,
    chunks UInt32,
    cost_usd Float64,
    has_context UInt8,
    text String CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String),
    payload_size UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY request_id;
