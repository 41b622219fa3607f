-- A/B experiments (issue 10 section 3).
--
-- Feedback (schemas/feedback.py) from llm.feedback: one row per feedback event; several per
-- response are kept (a thumb now, a score later). A replayed event collapses by
-- (request_id, event_id), the latest insert winning (query with FINAL). thumbs: 1 up,
-- -1 down, 0 none; score NULL when the app sent none. The comment is stored as
-- Settings.store_text says (redacted by default), like every text we keep.
CREATE TABLE IF NOT EXISTS feedback
(
    request_id String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String),
    user_id String,
    score Nullable(Float64),
    thumbs Int8,
    label String,
    comment String CODEC(ZSTD(1)),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (request_id, event_id);

-- Every state of every experiment (schemas/experiments.py) from llm.experiments, verified as
-- signed: the topic is compacted (only the newest state survives there), this keeps the
-- history. shares: each variant's share of traffic in that state; payload: the event's JSON.
CREATE TABLE IF NOT EXISTS experiment_events
(
    name String,
    revision UInt32,
    event_id String,
    ts DateTime64(3, 'UTC'),
    status LowCardinality(String),
    prompt_name LowCardinality(String),
    control String,
    sticky LowCardinality(String),
    shares Map(String, Float64),
    stopped Array(String),
    guardrails Array(LowCardinality(String)),
    reason String,
    winner String,
    started_at Nullable(DateTime64(3, 'UTC')),
    payload String CODEC(ZSTD(1)),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (name, revision);

-- Guardrail decisions (streams/agents/guardrail.py): a variant whose guardrail rate is worse
-- than control's by the always-valid test (mSPRT) is stopped; the row keeps the evidence
-- (counts, difference, its confidence sequence, the always-valid p-value and the level it
-- was compared with). decision_id is stable per (experiment, variant, metric, revision), so
-- a replayed decision collapses.
CREATE TABLE IF NOT EXISTS experiment_decisions
(
    decision_id String,
    ts DateTime64(3, 'UTC'),
    experiment String,
    prompt_name LowCardinality(String),
    revision UInt32,
    action LowCardinality(String),
    variant String,
    control String,
    metric LowCardinality(String),
    control_hits UInt64,
    control_n UInt64,
    treatment_hits UInt64,
    treatment_n UInt64,
    difference Float64,
    cs_low Float64,
    cs_high Float64,
    p_value Float64,
    alpha Float64,
    tau Float64,
    message String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (experiment, decision_id);

-- Feedback joined to the response it is about: its experiment, variant and prompt version.
-- Feedback about an unknown (or not yet stored) response is left out.
CREATE VIEW IF NOT EXISTS feedback_by_variant AS
SELECT
    f.request_id AS request_id,
    f.event_id AS event_id,
    f.ts AS ts,
    f.score AS score,
    f.thumbs AS thumbs,
    f.label AS label,
    r.experiment AS experiment,
    r.variant AS variant,
    r.prompt_name AS prompt_name,
    r.prompt_version AS prompt_version
FROM (SELECT * FROM feedback FINAL) AS f
INNER JOIN
(
    SELECT request_id AS response_id, experiment, variant, prompt_name, prompt_version
    FROM responses FINAL
) AS r ON r.response_id = f.request_id;
