-- A uniform sample of each quality window's output embeddings (schemas/monitoring.py
-- QualityWindow.embedding_sample): at most 32 vectors, the bottom-k by request-id hash like
-- `sample`, their hashes parallel and ascending in embedding_sample_hashes, so windows merge
-- into the bottom-k of their union. Values are float32 as the embedding tier makes them.
-- The monitor's MMD drift test compares them with the reference's. Empty: no embeddings.
ALTER TABLE quality_windows ADD COLUMN IF NOT EXISTS embedding_sample Array(Array(Float32));
ALTER TABLE quality_windows ADD COLUMN IF NOT EXISTS embedding_sample_hashes Array(UInt64);
