-- The model-graded check (streams/judge/): one row per graded response and check, joined to
-- the graded response by request_id (`responses.request_id`, `requests.request_id`).
--   request_id        the graded (app) request
--   check             the rubric: faithfulness, rubric, harm
--   judge_request_id  the judge's own request (uuid5 of request_id and check, so a replay
--                     sends and stores the same one)
--   judge_model/pool  who graded it
--   verdict           pass | fail | unparsed (the judge wrote no verdict line) | error (the
--                     judge request failed: its error_kind says why)
--   score             1..5, 0 when the judge gave none
--   text              what the judge wrote, stored as Settings.store_text says (redacted by
--                     default), like every response's text
-- A verdict is itself a response: the metrics worker stores it in `responses` too (app
-- 'llmops-judge', attributes llmops.judge_of and llmops.judge_check, its parsed verdict as the
-- signals judge_parsed, judge_pass, judge_score, no other signal) and never in the quality
-- windows. This view copies each such row here as it is inserted, so the two tables never
-- disagree; a replayed verdict collapses by (request_id, check), the latest insert winning.
CREATE TABLE IF NOT EXISTS judgements
(
    request_id String,
    `check` LowCardinality(String),
    judge_request_id String,
    tenant LowCardinality(String),
    judge_model LowCardinality(String),
    judge_pool LowCardinality(String),
    verdict LowCardinality(String),
    score UInt8,
    text String CODEC(ZSTD(1)),
    error_kind LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (request_id, `check`)
TTL inserted_at + INTERVAL 30 DAY;

-- The inner SELECT renames the response's own request_id first: ClickHouse aliases are
-- global, so `... AS request_id` would otherwise shadow it.
CREATE MATERIALIZED VIEW IF NOT EXISTS judgements_from_responses TO judgements AS
SELECT
    attributes['llmops.judge_of'] AS request_id,
    attributes['llmops.judge_check'] AS `check`,
    judge_request_id,
    tenant,
    judge_model,
    judge_pool,
    multiIf(
        error_kind != '', 'error',
        NOT mapContains(signals, 'judge_pass'), 'unparsed',
        signals['judge_pass'] = 1, 'pass',
        'fail'
    ) AS verdict,
    toUInt8(signals['judge_score']) AS score,
    text,
    error_kind,
    ts
FROM
(
    SELECT
        request_id AS judge_request_id,
        model AS judge_model,
        pool AS judge_pool,
        attributes,
        tenant,
        signals,
        text,
        error_kind,
        ts
    FROM responses
    WHERE mapContains(signals, 'judge_parsed')
);
