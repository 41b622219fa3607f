/* Quality of each prompt version per hour over the last day: responses, errors and the main
   rates (exact: sums of hits over sums of totals). Per-rate Wilson intervals, PII by entity
   included: SELECT * FROM quality_rates_hourly. */
SELECT
    hour,
    prompt_name,
    prompt_version,
    responses,
    errors,
    round(error_rate, 4) AS error_rate,
    round(refusal_rate, 4) AS refusal_rate,
    round(pii_output_rate, 4) AS pii_output_rate,
    round(toxic_rate, 4) AS toxic_rate,
    round(unsupported_rate, 4) AS unsupported_rate,
    round(json_invalid_rate, 4) AS json_invalid_rate
FROM quality_hourly
WHERE hour >= now() - INTERVAL 1 DAY
ORDER BY prompt_name, prompt_version, hour
