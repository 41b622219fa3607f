/* Top PII leaks in outputs by entity type, today and yesterday (UTC): answers that held that
   type and the entities they held (the responses' signals), and the leak rate: answers that
   leaked it over the answers checked for PII (the quality windows, exact; NULL where no
   window has closed yet). */
SELECT
    l.entity AS entity,
    l.prompt_name AS prompt_name,
    l.prompt_version AS prompt_version,
    l.leaking_responses AS leaking_responses,
    l.entities_found AS entities_found,
    l.last_seen AS last_seen,
    round(r.leak_rate, 6) AS leak_rate
FROM
(
    SELECT
        entity,
        prompt_name,
        prompt_version,
        sum(leaking_responses) AS leaking_responses,
        sum(entities_found) AS entities_found,
        max(last_seen) AS last_seen
    FROM pii_leaks_daily
    WHERE day >= yesterday()
    GROUP BY entity, prompt_name, prompt_version
) AS l
LEFT JOIN
(
    SELECT
        substring(rate, 12) AS entity,
        prompt_name,
        prompt_version,
        hits[rate] / checked AS leak_rate
    FROM
    (
        SELECT
            prompt_name,
            prompt_version,
            sum(rate_totals['pii_output']) AS checked,
            sumMap(rate_hits) AS hits
        FROM quality_windows FINAL
        WHERE segment = '' AND window_start >= yesterday()
        GROUP BY prompt_name, prompt_version
    )
    ARRAY JOIN mapKeys(hits) AS rate
    WHERE startsWith(rate, 'pii_output.') AND checked > 0
) AS r
    ON r.entity = l.entity AND r.prompt_name = l.prompt_name AND r.prompt_version = l.prompt_version
ORDER BY leaking_responses DESC, entities_found DESC, entity, prompt_name, prompt_version
LIMIT 50
