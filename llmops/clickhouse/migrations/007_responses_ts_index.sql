-- Time-range scans of responses (analysts' queries, and the metrics worker completing a
-- window it first sees after it closed) skip granules by ts instead of reading the table.
ALTER TABLE responses ADD INDEX IF NOT EXISTS ts_minmax ts TYPE minmax GRANULARITY 1;
