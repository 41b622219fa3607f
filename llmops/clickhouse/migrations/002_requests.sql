-- Every PromptRequest the platform accepted (schemas/requests.py), one row per request_id.
-- Columns are the model's field names; sampling.* and prompt.* are flattened
-- (max_tokens, temperature, top_p; prompt_name, prompt_label, prompt_version) and the
-- messages themselves are summarised (message_count, input_chars), not stored.
-- ReplacingMergeTree by request_id: a request consumed twice (at-least-once) is one row
-- after merges; query with FINAL for exact counts. A replay carries the same ts, so it lands
-- in the same partition and collapses. (schema_migrations, number 001, is created in code.)
CREATE TABLE IF NOT EXISTS requests
(
    request_id String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String),
    user_id String,
    session_id String,
    prompt_name LowCardinality(String),
    prompt_label String,
    prompt_version UInt32,
    model LowCardinality(String),
    adapter String,
    stream UInt8,
    max_tokens UInt32,
    temperature Float32,
    top_p Float32,
    message_count UInt16,
    input_chars UInt32,
    has_context UInt8,
    reply_to String,
    deadline Nullable(DateTime64(3, 'UTC')),
    attributes Map(LowCardinality(String), String),
    payload_size UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY request_id;
