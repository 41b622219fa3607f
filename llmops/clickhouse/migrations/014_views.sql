-- Views for analysts and SREs (infra/clickhouse/README.md documents each one, its columns and
-- how to roll its numbers up correctly). Every view reads its tables with FINAL, so a window or
-- response stored twice (at-least-once delivery) counts once.
--
-- Rates are exact: a quality window stores each rate as hits and totals, so a rate over hours,
-- pools or segments is sum(hits) / sum(totals), never an average of rates. Percentiles do not
-- add up: a column named *_upper / *_lower is a bound, *_approx an approximation; the exact
-- rollup merges the windows' KLL sketches (`llmops report`, streams.quality) or, within the
-- responses' retention, takes exact quantiles over the responses themselves (pool_latency_last_hour).

-- Quality of each prompt version per hour, over the whole group (segment ''), summed over its
-- variants, pools and models: responses, errors, every rate's hits and totals (maps) and the
-- main rates (NULL where no response was checked for it).
CREATE VIEW IF NOT EXISTS quality_hourly AS
SELECT
    toStartOfHour(window_start) AS hour,
    prompt_name,
    prompt_version,
    count() AS windows,
    sum(responses) AS responses,
    sum(errors) AS errors,
    sumMap(rate_hits) AS hits,
    sumMap(rate_totals) AS totals,
    if(responses = 0, NULL, errors / responses) AS error_rate,
    if(totals['refusal'] = 0, NULL, hits['refusal'] / totals['refusal']) AS refusal_rate,
    if(totals['pii_output'] = 0, NULL, hits['pii_output'] / totals['pii_output']) AS pii_output_rate,
    if(totals['toxic'] = 0, NULL, hits['toxic'] / totals['toxic']) AS toxic_rate,
    if(totals['unsupported'] = 0, NULL, hits['unsupported'] / totals['unsupported']) AS unsupported_rate,
    if(totals['json_invalid'] = 0, NULL, hits['json_invalid'] / totals['json_invalid']) AS json_invalid_rate
FROM quality_windows FINAL
WHERE segment = ''
GROUP BY hour, prompt_name, prompt_version;

-- The same, one row per rate with its 95% Wilson interval. An entity type's rate
-- ("pii_output.EMAIL") is counted of the answers checked for PII (pii_output's total): a
-- window where that type never showed up holds no entry for it, but its answers were checked.
CREATE VIEW IF NOT EXISTS quality_rates_hourly AS
WITH 1.959963984540054 AS z
SELECT
    hour,
    prompt_name,
    prompt_version,
    rate,
    all_hits[rate] AS hits,
    if(startsWith(rate, 'pii_output.'), all_totals['pii_output'], all_totals[rate]) AS totals,
    hits / totals AS value,
    (value + z * z / (2 * totals)) / (1 + z * z / totals) AS center,
    z / (1 + z * z / totals) * sqrt(value * (1 - value) / totals + z * z / (4 * totals * totals)) AS half,
    if(hits = 0, 0., greatest(0., center - half)) AS wilson_low,
    if(hits = totals, 1., least(1., center + half)) AS wilson_high
FROM
(
    SELECT
        toStartOfHour(window_start) AS hour,
        prompt_name,
        prompt_version,
        sumMap(rate_hits) AS all_hits,
        sumMap(rate_totals) AS all_totals
    FROM quality_windows FINAL
    WHERE segment = ''
    GROUP BY hour, prompt_name, prompt_version
)
ARRAY JOIN arrayDistinct(arrayConcat(mapKeys(all_totals), mapKeys(all_hits))) AS rate
WHERE totals > 0;

-- Drift of each prompt version over the last 24 hours, per feature and statistic: how many
-- tests ran (windows x groups x segments), how many found drift, the largest value, the
-- longest streak, the smallest Benjamini-Hochberg adjusted p-value, and where it drifted.
CREATE VIEW IF NOT EXISTS drift_last_day AS
SELECT
    prompt_name,
    prompt_version,
    feature,
    statistic,
    count() AS tests,
    countIf(drifted) AS drifted_tests,
    drifted_tests / tests AS drifted_share,
    max(value) AS max_value,
    max(threshold) AS threshold,
    max(streak) AS max_streak,
    min(p_adjusted) AS min_p_adjusted,
    if(drifted_tests = 0, NULL, maxIf(window_start, drifted)) AS last_drifted_window,
    arraySort(groupUniqArrayIf(segment, drifted)) AS drifted_segments
FROM drift FINAL
WHERE window_start >= now64(3) - INTERVAL 1 DAY
GROUP BY prompt_name, prompt_version, feature, statistic;

-- PII in outputs by entity type and day, from the responses' own signals
-- (signals['pii_output.EMAIL'] = how many e-mail addresses that answer held): responses that
-- leaked that type and how many entities they held. Within the responses' retention.
CREATE VIEW IF NOT EXISTS pii_leaks_daily AS
SELECT
    toDate(ts) AS day,
    prompt_name,
    prompt_version,
    substring(signal, 12) AS entity,
    count() AS leaking_responses,
    toUInt64(sum(found)) AS entities_found,
    max(ts) AS last_seen
FROM responses FINAL
ARRAY JOIN mapKeys(signals) AS signal, mapValues(signals) AS found
WHERE startsWith(signal, 'pii_output.') AND found > 0
GROUP BY day, prompt_name, prompt_version, entity;

-- PII leak rates by entity type and day, from the quality windows (kept past the responses'
-- retention): responses that leaked that type over the responses checked for PII (exact).
CREATE VIEW IF NOT EXISTS pii_leak_rates_daily AS
SELECT
    day,
    prompt_name,
    prompt_version,
    substring(rate, 12) AS entity,
    hits[rate] AS leaking_responses,
    checked AS checked_responses,
    if(checked = 0, NULL, leaking_responses / checked) AS leak_rate
FROM
(
    SELECT
        toDate(window_start) AS day,
        prompt_name,
        prompt_version,
        sum(rate_totals['pii_output']) AS checked,
        sumMap(rate_hits) AS hits
    FROM quality_windows FINAL
    WHERE segment = ''
    GROUP BY day, prompt_name, prompt_version
)
ARRAY JOIN mapKeys(hits) AS rate
WHERE startsWith(rate, 'pii_output.') AND hits[rate] > 0;

-- Latency of each pool and model over the last hour, exact (quantileExactInclusive, numpy's
-- default interpolation) over the successful responses themselves; errors counted apart.
CREATE VIEW IF NOT EXISTS pool_latency_last_hour AS
SELECT
    pool,
    model,
    count() AS responses,
    countIf(error_kind != '') AS errors,
    errors / responses AS error_rate,
    quantileExactInclusiveIf(0.5)(total_ms, error_kind = '') AS latency_p50_ms,
    quantileExactInclusiveIf(0.95)(total_ms, error_kind = '') AS latency_p95_ms,
    quantileExactInclusiveIf(0.99)(total_ms, error_kind = '') AS latency_p99_ms,
    quantileExactInclusiveIf(0.95)(ttft_ms, error_kind = '') AS ttft_p95_ms
FROM responses FINAL
WHERE ts >= now64(3) - INTERVAL 1 HOUR
GROUP BY pool, model;

-- Latency of each pool and model per hour from the metric windows (kept past the responses'
-- retention). Window percentiles do not merge: the hour's p95 lies between the smallest and
-- the largest window p95 (*_lower, *_upper: bounds); *_approx is the request-weighted mean of
-- the window percentiles, an approximation with no guarantee.
CREATE VIEW IF NOT EXISTS pool_latency_hourly AS
SELECT
    hour,
    pool,
    model,
    window_requests AS requests,
    window_errors AS errors,
    if(requests = 0, NULL, errors / requests) AS error_rate,
    if(requests = 0, NULL, weighted_p50 / requests) AS latency_p50_ms_approx,
    if(requests = 0, NULL, weighted_p95 / requests) AS latency_p95_ms_approx,
    latency_p95_ms_lower,
    latency_p95_ms_upper,
    latency_p99_ms_upper
FROM
(
    SELECT
        toStartOfHour(window_start) AS hour,
        pool,
        model,
        sum(requests) AS window_requests,
        sum(errors) AS window_errors,
        sum(latency_p50_ms * requests) AS weighted_p50,
        sum(latency_p95_ms * requests) AS weighted_p95,
        min(latency_p95_ms) AS latency_p95_ms_lower,
        max(latency_p95_ms) AS latency_p95_ms_upper,
        max(latency_p99_ms) AS latency_p99_ms_upper
    FROM metric_windows FINAL
    GROUP BY hour, pool, model
);

-- Fairness over the last 24 hours: for each prompt version, segment attribute and rate, each
-- value's rate against the best value's (the lowest rate among values with at least 30
-- responses checked; ties to the larger group, then the name), as a ratio with its 95% Katz
-- interval (0.5 added to every cell when one is empty), as llmops.stats.fairness.rate_ratio
-- computes it. outside_band: both sides have 30+ responses and the whole interval is outside
-- 0.8-1.25 (the four-fifths rule; the monitor's own band and minimum are in its settings).
CREATE VIEW IF NOT EXISTS fairness_last_day AS
WITH 1.959963984540054 AS z
SELECT
    prompt_name,
    prompt_version,
    attribute,
    value,
    metric,
    hits,
    totals,
    hits / totals AS rate,
    best.1 AS best_value,
    best.2 AS best_hits,
    best.3 AS best_totals,
    best_hits / best_totals AS best_rate,
    least(toInt64(hits), toInt64(best_hits), toInt64(totals - hits), toInt64(best_totals - best_hits)) = 0
        AS corrected,
    hits + 0.5 * corrected AS a,
    totals + corrected AS n_g,
    best_hits + 0.5 * corrected AS c,
    best_totals + corrected AS n_r,
    log((a / n_g) / (c / n_r)) AS log_ratio,
    z * sqrt(1 / a - 1 / n_g + 1 / c - 1 / n_r) AS half_width,
    exp(log_ratio) AS ratio,
    exp(log_ratio - half_width) AS ratio_low,
    exp(log_ratio + half_width) AS ratio_high,
    totals >= 30 AND best_totals >= 30 AND (ratio_high < 0.8 OR ratio_low > 1.25) AS outside_band
FROM
(
    SELECT
        *,
        argMinIf(
            tuple(value, hits, totals),
            tuple(hits / totals, -toInt64(totals), value),
            totals >= 30
        ) OVER (PARTITION BY prompt_name, prompt_version, attribute, metric) AS best
    FROM
    (
        SELECT
            prompt_name,
            prompt_version,
            substring(segment, 1, position(segment, '=') - 1) AS attribute,
            substring(segment, position(segment, '=') + 1) AS value,
            metric,
            sum(rate_hits[metric]) AS hits,
            sum(rate_totals[metric]) AS totals
        FROM quality_windows FINAL
        ARRAY JOIN ['refusal', 'error', 'pii_output', 'toxic', 'unsupported'] AS metric
        WHERE segment != '' AND window_start >= now64(3) - INTERVAL 1 DAY
        GROUP BY prompt_name, prompt_version, attribute, value, metric
    )
    WHERE totals > 0
)
WHERE best_totals > 0;

-- What changed when a version went live: for each prompt, each version's first hour (from its
-- first window) against the last hour of the version live before it (the one whose first
-- window came last before), over the whole group. Rates are exact; latency_p95_ms_upper is
-- the largest window p95 of that hour, an upper bound of the hour's p95 (percentiles do not
-- average); drifted_tests counts drift tests that found drift in that hour.
CREATE VIEW IF NOT EXISTS version_changes AS
WITH
    spans AS
    (
        SELECT
            prompt_name,
            prompt_version,
            min(window_start) AS first_start,
            max(window_end) AS last_end
        FROM quality_windows FINAL
        WHERE segment = '' AND prompt_name != ''
        GROUP BY prompt_name, prompt_version
    ),
    changes AS
    (
        SELECT
            prompt_name,
            prompt_version AS new_version,
            first_start AS went_live,
            lagInFrame(prompt_version) OVER w AS old_version,
            lagInFrame(last_end) OVER w AS old_last_end,
            row_number() OVER w AS nth
        FROM spans
        WINDOW w AS (PARTITION BY prompt_name ORDER BY first_start, prompt_version
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ),
    hours AS
    (
        SELECT
            c.prompt_name AS prompt_name,
            c.new_version AS new_version,
            q.prompt_version = c.new_version AS is_new,
            sum(q.responses) AS responses,
            sum(q.errors) AS errors,
            sum(q.rate_hits['refusal']) AS refusal_hits,
            sum(q.rate_totals['refusal']) AS refusal_totals,
            sum(q.rate_hits['pii_output']) AS pii_hits,
            sum(q.rate_totals['pii_output']) AS pii_totals,
            sum(q.rate_hits['toxic']) AS toxic_hits,
            sum(q.rate_totals['toxic']) AS toxic_totals,
            sum(q.rate_hits['unsupported']) AS unsupported_hits,
            sum(q.rate_totals['unsupported']) AS unsupported_totals,
            max(q.quantiles['latency_ms'][3]) AS p95_upper
        FROM changes AS c
        INNER JOIN (SELECT * FROM quality_windows FINAL WHERE segment = '') AS q
            ON q.prompt_name = c.prompt_name
        WHERE c.nth > 1
            AND ((q.prompt_version = c.new_version AND q.window_start < c.went_live + INTERVAL 1 HOUR)
              OR (q.prompt_version = c.old_version AND q.window_end > c.old_last_end - INTERVAL 1 HOUR))
        GROUP BY prompt_name, new_version, is_new
    ),
    drifts AS
    (
        SELECT
            c.prompt_name AS prompt_name,
            c.new_version AS new_version,
            d.prompt_version = c.new_version AS is_new,
            countIf(d.drifted) AS drifted_tests
        FROM changes AS c
        INNER JOIN (SELECT * FROM drift FINAL) AS d ON d.prompt_name = c.prompt_name
        WHERE c.nth > 1
            AND ((d.prompt_version = c.new_version AND d.window_start < c.went_live + INTERVAL 1 HOUR
                  AND d.window_start >= c.went_live)
              OR (d.prompt_version = c.old_version AND d.window_end > c.old_last_end - INTERVAL 1 HOUR
                  AND d.window_end <= c.old_last_end))
        GROUP BY prompt_name, new_version, is_new
    )
SELECT
    c.prompt_name AS prompt_name,
    c.old_version AS old_version,
    c.new_version AS new_version,
    c.old_last_end AS old_last_end,
    c.went_live AS went_live,
    o.responses AS old_responses,
    n.responses AS new_responses,
    if(o.responses = 0, NULL, o.errors / o.responses) AS old_error_rate,
    if(n.responses = 0, NULL, n.errors / n.responses) AS new_error_rate,
    if(o.refusal_totals = 0, NULL, o.refusal_hits / o.refusal_totals) AS old_refusal_rate,
    if(n.refusal_totals = 0, NULL, n.refusal_hits / n.refusal_totals) AS new_refusal_rate,
    if(o.pii_totals = 0, NULL, o.pii_hits / o.pii_totals) AS old_pii_output_rate,
    if(n.pii_totals = 0, NULL, n.pii_hits / n.pii_totals) AS new_pii_output_rate,
    if(o.toxic_totals = 0, NULL, o.toxic_hits / o.toxic_totals) AS old_toxic_rate,
    if(n.toxic_totals = 0, NULL, n.toxic_hits / n.toxic_totals) AS new_toxic_rate,
    if(o.unsupported_totals = 0, NULL, o.unsupported_hits / o.unsupported_totals) AS old_unsupported_rate,
    if(n.unsupported_totals = 0, NULL, n.unsupported_hits / n.unsupported_totals) AS new_unsupported_rate,
    o.p95_upper AS old_latency_p95_ms_upper,
    n.p95_upper AS new_latency_p95_ms_upper,
    od.drifted_tests AS old_drifted_tests,
    nd.drifted_tests AS new_drifted_tests
FROM changes AS c
LEFT JOIN (SELECT * FROM hours WHERE is_new) AS n
    ON n.prompt_name = c.prompt_name AND n.new_version = c.new_version
LEFT JOIN (SELECT * FROM hours WHERE NOT is_new) AS o
    ON o.prompt_name = c.prompt_name AND o.new_version = c.new_version
LEFT JOIN (SELECT * FROM drifts WHERE is_new) AS nd
    ON nd.prompt_name = c.prompt_name AND nd.new_version = c.new_version
LEFT JOIN (SELECT * FROM drifts WHERE NOT is_new) AS od
    ON od.prompt_name = c.prompt_name AND od.new_version = c.new_version
WHERE c.nth > 1;
