-- Partial indexes whose condition is an IN list of three or more strings made SQLite build a
-- temporary b-tree for the list on every insert and update of a run (it evaluates each index's
-- condition for the old and the new row). The live sets are stated instead with the timestamps
-- every transition sets: a run is live from its dial (dialed_at) until it ends (ended_at), so
-- status changes between ringing and in_progress no longer touch the live indexes at all.
-- The index of all unfinished runs by status (runs_active) is replaced by one per waiting
-- status: it had an entry rewritten at every status change of every call.
UPDATE runs SET dialed_at = COALESCE(dialed_at, created_at)
    WHERE status IN ('dialing', 'ringing', 'in_progress') AND dialed_at IS NULL;
DROP INDEX runs_live;
DROP INDEX runs_live_org;
DROP INDEX runs_live_config;
DROP INDEX runs_active;
DROP INDEX runs_queue;
-- Oldest first per configuration; org_id makes the queue counts an index-only scan.
CREATE INDEX runs_queue ON runs(config_id, id, org_id) WHERE status = 'queued';
CREATE INDEX runs_scheduled ON runs(org_id, config_id) WHERE status = 'scheduled';
CREATE INDEX runs_live_org ON runs(org_id) WHERE dialed_at IS NOT NULL AND ended_at IS NULL;
CREATE INDEX runs_live_config ON runs(config_id) WHERE dialed_at IS NOT NULL AND ended_at IS NULL;

-- Pacing schedules of an SQLite database live in its one process's memory.
DROP TABLE config_pacing;
