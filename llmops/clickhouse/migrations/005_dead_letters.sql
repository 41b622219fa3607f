-- Input a consumer could not take (schemas/operations.py DeadLetter), kept whole
-- (payload_b64, key_b64, headers) so it can be inspected and replayed. Keyed by where it
-- came from and who rejected it: the same record dead-lettered again after a restart is
-- one row (ReplacingMergeTree; query with FINAL). No partition: a re-created dead letter
-- has a new ts and must still meet the row it replaces.
CREATE TABLE IF NOT EXISTS dead_letters
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    reason String,
    service LowCardinality(String),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    request_id String,
    reply_to String,
    payload_size UInt32,
    payload_b64 String CODEC(ZSTD(1)),
    key_b64 String,
    headers Map(LowCardinality(String), String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (source_topic, source_partition, source_offset, service);
