-- Every trigger added one to agents.total_runs inside its own transaction, so the agent's row
-- stayed locked until that transaction's commit was flushed: all triggers of one agent went
-- through one after another, one WAL flush each (~600 to 900 per second on a local disk,
-- whatever the number of connections or nodes). A trigger now adds its one to a slot of its
-- own session (64 slots per agent), so concurrent triggers rarely wait on each other and
-- their commits share flushes; readers add the slots to the base count kept in agents.
CREATE TABLE agent_run_counts (
    agent_id BIGINT NOT NULL,
    slot SMALLINT NOT NULL,
    runs BIGINT NOT NULL,
    PRIMARY KEY (agent_id, slot)
);
