-- The dispatcher re-reads the counts of unfinished runs every few seconds; with millions of
-- finished runs in history that must not scan them all.
CREATE INDEX runs_active ON runs(org_id, config_id, status)
    WHERE status IN ('scheduled', 'queued', 'dialing', 'ringing', 'in_progress');
