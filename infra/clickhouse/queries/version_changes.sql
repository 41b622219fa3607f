/* What changed when a version went live: its first hour against the last hour of the version
   live before it. Newest changes first. */
SELECT
    prompt_name,
    old_version,
    new_version,
    went_live,
    old_responses,
    new_responses,
    round(old_error_rate, 4) AS old_error_rate,
    round(new_error_rate, 4) AS new_error_rate,
    round(old_refusal_rate, 4) AS old_refusal_rate,
    round(new_refusal_rate, 4) AS new_refusal_rate,
    round(old_pii_output_rate, 4) AS old_pii_output_rate,
    round(new_pii_output_rate, 4) AS new_pii_output_rate,
    round(old_toxic_rate, 4) AS old_toxic_rate,
    round(new_toxic_rate, 4) AS new_toxic_rate,
    round(old_unsupported_rate, 4) AS old_unsupported_rate,
    round(new_unsupported_rate, 4) AS new_unsupported_rate,
    old_latency_p95_ms_upper,
    new_latency_p95_ms_upper,
    old_drifted_tests,
    new_drifted_tests
FROM version_changes
ORDER BY went_live DESC, prompt_name
