/* Fairness over the last 24 hours: each segment value's rate against the best value's, with
   the ratio's 95% interval; values outside the 0.8-1.25 band (with 30+ responses) first. */
SELECT
    prompt_name,
    prompt_version,
    attribute,
    value,
    metric,
    hits,
    totals,
    round(rate, 4) AS rate,
    best_value,
    round(best_rate, 4) AS best_rate,
    round(ratio, 3) AS ratio,
    round(ratio_low, 3) AS ratio_low,
    round(ratio_high, 3) AS ratio_high,
    outside_band
FROM fairness_last_day
ORDER BY outside_band DESC, ratio DESC, prompt_name, prompt_version, attribute, metric, value
