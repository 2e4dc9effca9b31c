-- A run's status history lives in the run row: appending to it is part of the same update
-- as the status change, instead of a second table's insert per transition.
ALTER TABLE runs ADD COLUMN events TEXT NOT NULL DEFAULT '[]';

UPDATE runs SET events = COALESCE((
    SELECT json_group_array(json(e.event)) FROM (
        SELECT json_object(
                   'status', status,
                   'at', strftime('%Y-%m-%dT%H:%M:%fZ', at / 1000000.0, 'unixepoch'),
                   'attempt', attempt,
                   'provider_status', provider_status,
                   'detail', detail) AS event
        FROM run_events WHERE run_events.run_id = runs.id ORDER BY seq
    ) e
), '[]');

DROP TABLE run_events;
