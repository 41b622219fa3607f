/* Pools and models with the slowest answers over the last hour: exact percentiles over the
   successful responses (errors counted apart; NULL where a pool answered nothing but errors).
   For longer ranges: pool_latency_hourly (bounds from the metric windows) or `llmops report`
   (merged KLL sketches). */
SELECT
    pool,
    model,
    responses,
    errors,
    round(error_rate, 4) AS error_rate,
    if(isNaN(latency_p50_ms), NULL, round(latency_p50_ms, 1)) AS latency_p50_ms,
    if(isNaN(latency_p95_ms), NULL, round(latency_p95_ms, 1)) AS latency_p95_ms,
    if(isNaN(latency_p99_ms), NULL, round(latency_p99_ms, 1)) AS latency_p99_ms,
    if(isNaN(ttft_p95_ms), NULL, round(ttft_p95_ms, 1)) AS ttft_p95_ms
FROM pool_latency_last_hour
ORDER BY latency_p95_ms DESC, pool, model
LIMIT 20
