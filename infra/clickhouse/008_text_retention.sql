-- Rows that hold user or model text (requests, responses, dead_letters) are kept 30 days by
-- their ts: the default of Settings.retention_days. A migration cannot carry a setting, so
-- the metrics worker sets the configured value at start (streams/retention.py; 0 removes
-- the TTL); this gives every database a bounded retention even before a worker has run.
ALTER TABLE requests MODIFY TTL ts + INTERVAL 30 DAY;
ALTER TABLE responses MODIFY TTL ts + INTERVAL 30 DAY;
ALTER TABLE dead_letters MODIFY TTL ts + INTERVAL 30 DAY;
