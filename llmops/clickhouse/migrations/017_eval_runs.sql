-- Prompt test suites (llmops/evals, `llmops eval run`): one row per run and prompt version run
-- (eval_runs), one row per case x repeat (eval_results).
--
-- eval_runs: the release gate reads the latest row for (prompt_name, prompt_version) with
-- passed = 1 (a protected label moves only then). passed is the suite's gate verdict for that
-- version; a run whose label moved while it ran answered with more than one version and
-- writes a row for each with passed = 0. prompt_version 0: no version answered (every request
-- failed before routing). target is the reference as given (support@production), label its
-- label ('' for a pinned version); role 'candidate' (--prompt) or 'baseline' (--compare) and
-- compared_with the other target's run_id, with the paired verdict (mcnemar_p, the interval
-- of the mean score difference) on the candidate's row. A rerun of the same insert collapses
-- by (prompt_name, prompt_version, run_id).
CREATE TABLE IF NOT EXISTS eval_runs
(
    run_id String,
    suite String,
    suite_hash String,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    label LowCardinality(String),
    target String,
    cases UInt32,
    passed_cases UInt32,
    flaky_cases UInt32,
    pass_rate Float64,
    mean_score Float64,
    threshold Float64,
    min_pass_rate Float64,
    passed UInt8,
    repeat UInt16,
    seed Int64,
    role LowCardinality(String),
    compared_with String,
    mcnemar_p Float64,
    score_diff Float64,
    score_diff_low Float64,
    score_diff_high Float64,
    comparison String,
    started_at DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (prompt_name, prompt_version, run_id);

-- eval_results: what each case x repeat answered and how it was judged. checks_* are the
-- assertions in order (type with a "not " prefix when negated, passed 0/1, weight, message).
-- output is cut to 32768 characters. request_id joins `responses` (the platform's own row of
-- the same request, app 'llmops-eval').
CREATE TABLE IF NOT EXISTS eval_results
(
    run_id String,
    suite String,
    case_id String,
    repeat UInt16,
    seed Int64,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    label LowCardinality(String),
    request_id String,
    model LowCardinality(String),
    pool LowCardinality(String),
    passed UInt8,
    score Float64,
    error String,
    output String CODEC(ZSTD(1)),
    latency_ms Float64,
    input_tokens UInt32,
    output_tokens UInt32,
    cost_usd Float64,
    similarity Nullable(Float64),
    signals Map(LowCardinality(String), Float64),
    check_types Array(String),
    check_passed Array(UInt8),
    check_weights Array(Float64),
    check_messages Array(String),
    ts DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (run_id, prompt_name, prompt_version, case_id, repeat);
