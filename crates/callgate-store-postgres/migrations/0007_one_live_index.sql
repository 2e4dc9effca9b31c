-- Since 0006 claims read live_counts, and what still reads live runs (the live and orphaned
-- runs after a restart) reads all of them through runs_live. The per-organisation and
-- per-configuration indexes over the same rows were no longer read, yet every status change
-- of a call inserted into both (three changes per call: dialing, ringing, in progress).
DROP INDEX IF EXISTS runs_live_org;
DROP INDEX IF EXISTS runs_live_config;
