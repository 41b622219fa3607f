-- The cheap-tier quality signals of each response (streams/detectors/), on its own row so an
-- analyst filters on them directly: signals['refusal'] = 1, signals['pii_output'] > 0.
-- signal_detectors names the detector and version behind each value ("refusal_patterns@1"),
-- so values from before and after a detector upgrade can be told apart. Findings are
-- parallel arrays (one element per finding: its signal, kind, which text, span); the matched
-- text itself is never stored, it may be personal data.
ALTER TABLE responses ADD COLUMN IF NOT EXISTS signals Map(LowCardinality(String), Float64);
ALTER TABLE responses ADD COLUMN IF NOT EXISTS signal_detectors Map(LowCardinality(String), LowCardinality(String));
ALTER TABLE responses ADD COLUMN IF NOT EXISTS finding_signal Array(LowCardinality(String));
ALTER TABLE responses ADD COLUMN IF NOT EXISTS finding_kind Array(LowCardinality(String));
ALTER TABLE responses ADD COLUMN IF NOT EXISTS finding_where Array(LowCardinality(String));
ALTER TABLE responses ADD COLUMN IF NOT EXISTS finding_start Array(UInt32);
ALTER TABLE responses ADD COLUMN IF NOT EXISTS finding_end Array(UInt32);
