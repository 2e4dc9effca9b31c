-- Paced claims count live runs per organisation and configuration and keep each
-- configuration's pacing schedule in the database (SPEC §8.2).
CREATE INDEX runs_live_org ON runs(org_id) WHERE status IN ('dialing', 'ringing', 'in_progress');
CREATE INDEX runs_live_config ON runs(config_id) WHERE status IN ('dialing', 'ringing', 'in_progress');

CREATE TABLE config_pacing (
    config_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL
);
