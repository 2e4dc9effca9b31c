-- Paced claims count live runs per organisation and configuration and keep each
-- configuration's pacing schedule in the database, shared by every node (SPEC §8.2).
CREATE INDEX runs_live_org ON runs(org_id) WHERE status IN ('dialing', 'ringing', 'in_progress');
CREATE INDEX runs_live_config ON runs(config_id)
    WHERE status IN ('dialing', 'ringing', 'in_progress');

CREATE TABLE config_pacing (
    config_id BIGINT PRIMARY KEY,
    state JSONB NOT NULL
);

-- Heartbeats of the processes holding leases; a run leased by a silent node is an orphan.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    last_seen TIMESTAMPTZ NOT NULL
);
