-- Every status change rewrites a run's row, and a commit writes each page it dirtied into the
-- WAL whole: the runs a commit updates were created over the last few call lengths, so the
-- fewer runs share a page, the more pages each commit writes (and flushes, and copies back).
-- What a run is given once moves out of its row: the greeting (made with the run) to its
-- payload, and the call's results (written as it ends) to a table of their own, where runs
-- that end one after another fill one page after another. The history stays in the row, in
-- the compact entries the store writes from this version on (old entries stay readable).
CREATE TABLE run_results (
    run_id INTEGER PRIMARY KEY,
    transcript TEXT,
    recording_url TEXT,
    extracted TEXT
);
INSERT INTO run_results (run_id, transcript, recording_url, extracted)
    SELECT id, transcript, recording_url, extracted FROM runs
    WHERE transcript IS NOT NULL OR recording_url IS NOT NULL OR extracted IS NOT NULL;
ALTER TABLE run_payloads ADD COLUMN greeting TEXT;
UPDATE run_payloads SET greeting = (SELECT greeting FROM runs WHERE runs.id = run_payloads.run_id);
ALTER TABLE runs DROP COLUMN transcript;
ALTER TABLE runs DROP COLUMN recording_url;
ALTER TABLE runs DROP COLUMN extracted;
ALTER TABLE runs DROP COLUMN greeting;
