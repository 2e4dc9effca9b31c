-- The exact answer of an idempotent request when the run alone cannot rebuild it.
ALTER TABLE idempotency_keys ADD COLUMN response_status INTEGER;
ALTER TABLE idempotency_keys ADD COLUMN response_body TEXT;
