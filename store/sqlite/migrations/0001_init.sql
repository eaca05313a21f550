-- The job log. A job row exists from the first time it is heard of: a
-- delivery, a poll or a track request. Times are unix nanoseconds, UTC.
CREATE TABLE jobs (
	id                 INTEGER PRIMARY KEY,
	job_id             TEXT    NOT NULL UNIQUE,
	status             TEXT    NOT NULL,
	terminal           INTEGER NOT NULL DEFAULT 0,
	total_projects     INTEGER NOT NULL DEFAULT 0,
	completed_projects INTEGER NOT NULL DEFAULT 0,
	failed_projects    INTEGER NOT NULL DEFAULT 0,
	projects           TEXT    NOT NULL DEFAULT '[]',
	source             TEXT    NOT NULL DEFAULT '',
	progress           INTEGER NOT NULL DEFAULT 0,
	stage              TEXT    NOT NULL DEFAULT '',
	webhook_deliveries INTEGER NOT NULL DEFAULT 0,
	webhook_missed     INTEGER NOT NULL DEFAULT 0,
	poll_count         INTEGER NOT NULL DEFAULT 0,
	last_error         TEXT    NOT NULL DEFAULT '',
	created_at         INTEGER NOT NULL,
	updated_at         INTEGER NOT NULL,
	terminal_at        INTEGER,
	-- Position in the change feed; set once, when the job becomes terminal.
	-- Jobs are never deleted, so MAX(seq)+1 is never reused.
	seq                INTEGER UNIQUE,
	-- The reconciler's schedule, kept here so a restart loses none of it.
	next_poll_at       INTEGER,
	poll_step          INTEGER NOT NULL DEFAULT 0,
	fail_count         INTEGER NOT NULL DEFAULT 0,
	not_found_count    INTEGER NOT NULL DEFAULT 0,
	-- When a poll first saw the job end; a webhook is missed if none came by
	-- this time plus the grace period.
	poll_ended_at      INTEGER
);

CREATE INDEX jobs_due ON jobs (next_poll_at) WHERE terminal = 0;
CREATE INDEX jobs_created ON jobs (created_at);
-- Stats and the jobs-by-status metric count these small indexes, not the
-- rows with their projects and bodies.
CREATE INDEX jobs_status_source ON jobs (status, source);
CREATE INDEX jobs_missed ON jobs (webhook_missed) WHERE webhook_missed = 1;

-- Every signed delivery, usable or not, with the exact bytes received.
CREATE TABLE deliveries (
	id          INTEGER PRIMARY KEY,
	-- The job's row, NULL for a delivery that names no usable job. Keyed by
	-- the row id rather than the job id text so that deliveries of new jobs
	-- append to the index instead of writing a random page.
	job_row     INTEGER REFERENCES jobs (id),
	job_id      TEXT,
	received_at INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	status      TEXT    NOT NULL DEFAULT '',
	-- accepted: ended the job; duplicate: the job had ended the same way;
	-- conflict: the job had ended differently; invalid: signed but unusable.
	outcome     TEXT    NOT NULL,
	error       TEXT    NOT NULL DEFAULT '',
	body        BLOB    NOT NULL
);

CREATE INDEX deliveries_job ON deliveries (job_row, id);
CREATE INDEX deliveries_outcome ON deliveries (outcome);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
