-- A run's request payload (context, system context, metadata, unresolved names) is written
-- once and never changes, while its lifecycle row is rewritten at every status change. Kept in
-- one row, each of those rewrites copied ~1 KiB of payload and dirtied pages holding only two
-- runs; apart, the lifecycle rows are small and many share a page.
CREATE TABLE run_payloads (
    run_id INTEGER PRIMARY KEY,
    initial_context TEXT NOT NULL,
    system_context TEXT NOT NULL,
    metadata TEXT,
    unresolved_variables TEXT NOT NULL
);
INSERT INTO run_payloads (run_id, initial_context, system_context, metadata, unresolved_variables)
    SELECT id, initial_context, system_context, metadata, unresolved_variables FROM runs;
ALTER TABLE runs DROP COLUMN initial_context;
ALTER TABLE runs DROP COLUMN system_context;
ALTER TABLE runs DROP COLUMN metadata;
ALTER TABLE runs DROP COLUMN unresolved_variables;
