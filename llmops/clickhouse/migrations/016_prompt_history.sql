-- The prompt registry's history (issue 10): every version published and every label move on
-- llm.prompts, as the metrics worker reads them (streams/agents/history.py). The topic is
-- compacted (a label's newest move survives there); this table keeps them all.
--   event         'version' (a PromptVersion) | 'label' (a LabelMove)
--   version       the version published, or the one the label now points at
--   label         the label moved ('' for a version)
--   previous      the version the label held before (0: a new label)
--   content_hash  sha256 of the version's canonical content ('' for a move)
--   content       the version's canonical content, JSON ('' for a move)
--   actor, reason who moved the label and why (a forced move must say why)
--   forced        1: a protected label moved without a passing suite run (--force)
--   rollback      1: moved back to a version that held the label before
--   suite_run_id  the passing suite run (eval_runs.run_id) that allowed the move
-- Keyed by the event id: a replayed record is one row (ReplacingMergeTree; query with FINAL).
CREATE TABLE IF NOT EXISTS prompt_history
(
    prompt_name String,
    event LowCardinality(String),
    event_id String,
    ts DateTime64(3, 'UTC'),
    version UInt32,
    label LowCardinality(String),
    previous UInt32,
    content_hash String,
    content String CODEC(ZSTD(1)),
    model LowCardinality(String),
    actor String,
    reason String,
    forced UInt8,
    rollback UInt8,
    suite_run_id String,
    source_partition UInt32,
    source_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (prompt_name, event, event_id);
