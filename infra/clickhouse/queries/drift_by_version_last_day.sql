/* Drift of each prompt version over the last 24 hours: features that drifted first. */
SELECT
    prompt_name,
    prompt_version,
    feature,
    statistic,
    drifted_tests,
    tests,
    round(drifted_share, 4) AS drifted_share,
    round(max_value, 6) AS max_value,
    threshold,
    max_streak,
    min_p_adjusted,
    last_drifted_window,
    drifted_segments
FROM drift_last_day
ORDER BY drifted_tests DESC, max_value DESC, prompt_name, prompt_version, feature, statistic
