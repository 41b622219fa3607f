-- Drift results (schemas/monitoring.py DriftReport): one row per window, group, segment,
-- feature and statistic, tested against the prompt's reference (streams/monitoring/drift.py).
-- A window evaluated again (re-emitted after a restart) replaces its rows (ReplacingMergeTree
-- by inserted_at; query with FINAL). `streak` is the run of consecutive drifted windows the
-- alert waits for; the monitor reads the latest back at start so a restart forgets none.
CREATE TABLE IF NOT EXISTS drift
(
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    variant LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    segment String,
    feature LowCardinality(String),
    statistic LowCardinality(String),
    event_id String,
    ts DateTime64(3, 'UTC'),
    value Float64,
    p_value Nullable(Float64),
    p_adjusted Nullable(Float64),
    threshold Float64,
    drifted UInt8,
    streak UInt32,
    reference String,
    reference_size UInt64,
    current_size UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, prompt_name, prompt_version, variant, pool, model, segment, feature, statistic);

-- Alerts (schemas/monitoring.py Alert): one row per alert_id, stable per subject and opening,
-- so the resolution's row replaces the opening's. Open alerts:
-- SELECT ... FROM alerts FINAL WHERE state = 'open'.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    severity LowCardinality(String),
    kind LowCardinality(String),
    rule LowCardinality(String),
    subject String,
    state LowCardinality(String),
    opened_at Nullable(DateTime64(3, 'UTC')),
    message String,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    variant LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    segment String,
    window_start Nullable(DateTime64(3, 'UTC')),
    window_end Nullable(DateTime64(3, 'UTC')),
    evidence Map(LowCardinality(String), String),
    request_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY alert_id;
