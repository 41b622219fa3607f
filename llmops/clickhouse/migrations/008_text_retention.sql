-- Rows that hold user or model text (requests, responses, dead_letters) are kept 30 days
-- after they were stored (the default of Settings.retention_days). By inserted_at, which
-- ClickHouse fills, not by ts, which the producer chooses: a ts in the past would drop a row
-- as it arrives and one in the future would keep it forever. A migration cannot carry a
-- setting, so the metrics worker sets the configured value at start (streams/retention.py;
-- 0 removes the TTL); this gives every database a bounded retention before a worker ran.
ALTER TABLE requests MODIFY TTL inserted_at + INTERVAL 30 DAY;
ALTER TABLE responses MODIFY TTL inserted_at + INTERVAL 30 DAY;
ALTER TABLE dead_letters MODIFY TTL inserted_at + INTERVAL 30 DAY;
