-- Times are Unix microseconds (INTEGER); JSON is TEXT.
CREATE TABLE organizations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    quota_seconds_remaining INTEGER,
    max_concurrent_calls INTEGER NOT NULL DEFAULT 10,
    max_queued_calls INTEGER NOT NULL DEFAULT 10000,
    on_capacity TEXT NOT NULL DEFAULT 'queue',
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id),
    email TEXT NOT NULL,
    name TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, email)
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_keys_org ON api_keys(org_id);

CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id),
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    owner_user_id INTEGER REFERENCES users(id),
    total_runs INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX agents_org ON agents(org_id, id);

CREATE TABLE agent_versions (
    id INTEGER PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    version_number INTEGER NOT NULL,
    status TEXT NOT NULL,
    definition TEXT NOT NULL,
    template_context_variables TEXT,
    created_at INTEGER NOT NULL,
    published_at INTEGER,
    UNIQUE (agent_id, version_number)
);
CREATE UNIQUE INDEX agent_versions_one_draft ON agent_versions(agent_id) WHERE status = 'draft';
CREATE UNIQUE INDEX agent_versions_one_published ON agent_versions(agent_id) WHERE status = 'published';

-- A trigger path belongs to the first agent that used it, forever (SPEC §6.2).
CREATE TABLE trigger_paths (
    path TEXT PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    org_id INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE telephony_configs (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id),
    name TEXT NOT NULL,
    provider TEXT NOT NULL,
    credentials BLOB NOT NULL,
    credential_fields TEXT NOT NULL,
    is_default_outbound INTEGER NOT NULL DEFAULT 0,
    calls_per_second REAL NOT NULL,
    max_concurrent_calls INTEGER,
    active INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX telephony_configs_org ON telephony_configs(org_id, id);

CREATE TABLE phone_numbers (
    id INTEGER PRIMARY KEY,
    config_id INTEGER NOT NULL REFERENCES telephony_configs(id),
    org_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    label TEXT,
    is_default_caller_id INTEGER NOT NULL DEFAULT 0,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    UNIQUE (config_id, address)
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL,
    agent_id INTEGER NOT NULL,
    workflow_uuid TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    version_number INTEGER NOT NULL,
    environment TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    from_number TEXT,
    config_id INTEGER NOT NULL,
    provider TEXT NOT NULL,
    provider_call_id TEXT,
    status TEXT NOT NULL,
    initial_status TEXT NOT NULL,
    outcome TEXT,
    ended_reason TEXT,
    answered_by TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    scheduled_for INTEGER NOT NULL,
    dialed_at INTEGER,
    answered_at INTEGER,
    ended_at INTEGER,
    duration_seconds INTEGER,
    transcript TEXT,
    recording_url TEXT,
    extracted TEXT,
    initial_context TEXT NOT NULL,
    system_context TEXT NOT NULL,
    metadata TEXT,
    external_id TEXT,
    unresolved_variables TEXT NOT NULL,
    greeting TEXT,
    error TEXT,
    lease_owner TEXT,
    api_key_id INTEGER
);
CREATE INDEX runs_org ON runs(org_id, id);
CREATE INDEX runs_queue ON runs(config_id, id) WHERE status = 'queued';
CREATE INDEX runs_live ON runs(status) WHERE status IN ('dialing', 'ringing', 'in_progress');
CREATE INDEX runs_external ON runs(org_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE run_events (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    at INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    provider_status TEXT,
    detail TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    api_key_id INTEGER NOT NULL,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash BLOB NOT NULL,
    run_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, route, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency_keys(created_at);
