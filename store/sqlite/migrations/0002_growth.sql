-- Costs that stay flat as the log grows: replays stored once, counters kept
-- in the write transaction, sweeps and filtered pages through indexes, and
-- seq allocated from a counter so that pruning can never make it reuse one.

-- Replays: identical bytes for a job are one row, counted in copies.
-- body_hash is the SHA-256 of body; rows written before this migration have
-- none and are never matched. last_received_at is NULL on those rows too,
-- where it means received_at.
ALTER TABLE deliveries ADD COLUMN body_hash BLOB;
ALTER TABLE deliveries ADD COLUMN copies INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN last_received_at INTEGER;

-- Keyed by the job's row first, so that the deliveries of new jobs append to
-- the index. It also serves a job's delivery list and the missed-webhook
-- check, which only need the job_row prefix.
CREATE UNIQUE INDEX deliveries_copy ON deliveries (job_row, body_hash);
-- Signed deliveries that name no usable job: the bytes alone are the key.
CREATE UNIQUE INDEX deliveries_unjobbed ON deliveries (body_hash) WHERE job_row IS NULL;
DROP INDEX deliveries_job;
DROP INDEX deliveries_outcome;

-- The missed-webhook check runs once per job whose end a poll saw; a checked
-- job leaves the partial index, so a sweep with nothing to check is a probe.
ALTER TABLE jobs ADD COLUMN missed_checked INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET missed_checked = 1 WHERE webhook_missed = 1;
CREATE INDEX jobs_missed_due ON jobs (poll_ended_at) WHERE poll_ended_at IS NOT NULL AND missed_checked = 0;

-- Expiry looks only at jobs not yet terminal.
CREATE INDEX jobs_open_created ON jobs (created_at) WHERE terminal = 0;

-- A status-filtered page walks this index newest first.
CREATE INDEX jobs_status ON jobs (status, id);

-- Counts over the log, kept by the write transaction so that stats and a
-- metrics scrape read a handful of rows. Names: status:<status>,
-- source:<source>, outcome:<delivery outcome> (every delivery, copies
-- included), missed (jobs flagged webhookMissed), and seq (the last seq
-- given out, which pruning never lowers).
CREATE TABLE counters (
	name TEXT PRIMARY KEY,
	n    INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, n) SELECT 'status:' || status, COUNT(*) FROM jobs GROUP BY status;
INSERT INTO counters (name, n) SELECT 'source:' || source, COUNT(*) FROM jobs WHERE source != '' GROUP BY source;
INSERT INTO counters (name, n) SELECT 'outcome:' || outcome, COUNT(*) FROM deliveries GROUP BY outcome;
INSERT INTO counters (name, n) SELECT 'missed', COUNT(*) FROM jobs WHERE webhook_missed = 1;
INSERT INTO counters (name, n) SELECT 'seq', COALESCE(MAX(seq), 0) FROM jobs;

DROP INDEX jobs_created;
DROP INDEX jobs_status_source;
DROP INDEX jobs_missed;
