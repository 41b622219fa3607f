/* Open alerts (one per subject), most severe and newest first. */
SELECT
    severity,
    kind,
    rule,
    subject,
    prompt_name,
    prompt_version,
    segment,
    opened_at,
    message
FROM alerts FINAL
WHERE state = 'open'
ORDER BY multiIf(severity = 'critical', 0, severity = 'warning', 1, 2), opened_at DESC, alert_id
