-- The output embedding of each response the embedding tier read (streams/detectors/embeddings.py:
-- all-MiniLM-L6-v2, 384 floats, unit length), on its own row so an analyst can search answers
-- by meaning (cosineDistance(embedding, [...])) and drift is computed from stored embeddings
-- after a restart. Empty for a response outside the tier's sample or without text.
ALTER TABLE responses ADD COLUMN IF NOT EXISTS embedding Array(Float32);
