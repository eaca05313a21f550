-- The job log on Postgres: the same tables as the SQLite backend, times in
-- unix nanoseconds (UTC) so that a log copies between the two unchanged.
CREATE TABLE jobs (
	id                 bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_id             text    NOT NULL UNIQUE,
	status             text    NOT NULL,
	terminal           boolean NOT NULL DEFAULT false,
	total_projects     integer NOT NULL DEFAULT 0,
	completed_projects integer NOT NULL DEFAULT 0,
	failed_projects    integer NOT NULL DEFAULT 0,
	projects           text    NOT NULL DEFAULT '[]',
	source             text    NOT NULL DEFAULT '',
	progress           integer NOT NULL DEFAULT 0,
	stage              text    NOT NULL DEFAULT '',
	webhook_deliveries integer NOT NULL DEFAULT 0,
	webhook_missed     boolean NOT NULL DEFAULT false,
	poll_count         integer NOT NULL DEFAULT 0,
	last_error         text    NOT NULL DEFAULT '',
	created_at         bigint  NOT NULL,
	updated_at         bigint  NOT NULL,
	terminal_at        bigint,
	-- Position in the change feed, set in the transaction that ends the job,
	-- from feed_counter (see the package comment).
	seq                bigint  UNIQUE,
	-- The reconciler's schedule.
	next_poll_at       bigint,
	poll_step          integer NOT NULL DEFAULT 0,
	fail_count         integer NOT NULL DEFAULT 0,
	not_found_count    integer NOT NULL DEFAULT 0,
	-- When a poll first saw the job end; a webhook is missed if none came by
	-- this time plus the grace period. missed_checked: that check was made.
	poll_ended_at      bigint,
	missed_checked     boolean NOT NULL DEFAULT false
);

CREATE INDEX jobs_due ON jobs (next_poll_at, id) WHERE NOT terminal;
CREATE INDEX jobs_open_created ON jobs (created_at, id) WHERE NOT terminal;
CREATE INDEX jobs_missed_due ON jobs (poll_ended_at) WHERE poll_ended_at IS NOT NULL AND NOT missed_checked;
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_created ON jobs (created_at);

-- Every signed delivery, usable or not, with the exact bytes received.
-- Identical bytes for a job are one row, counted in copies.
CREATE TABLE deliveries (
	id               bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_row          bigint  REFERENCES jobs (id),
	job_id           text,
	received_at      bigint  NOT NULL,
	last_received_at bigint,
	attempt          integer NOT NULL,
	status           text    NOT NULL DEFAULT '',
	outcome          text    NOT NULL,
	error            text    NOT NULL DEFAULT '',
	body             bytea   NOT NULL,
	body_hash        bytea   NOT NULL,
	copies           integer NOT NULL DEFAULT 1
);

CREATE UNIQUE INDEX deliveries_copy ON deliveries (job_row, body_hash);
CREATE UNIQUE INDEX deliveries_unjobbed ON deliveries (body_hash) WHERE job_row IS NULL;

-- Counts over the log, kept by the write transaction: status:<status>,
-- source:<source>, outcome:<delivery outcome>, missed.
CREATE TABLE counters (
	name text   PRIMARY KEY,
	n    bigint NOT NULL
);

-- The last seq given out: one row, which every transaction that ends a job
-- updates, so that ends commit one after the other in seq order.
CREATE TABLE feed_counter (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq bigint  NOT NULL
);
INSERT INTO feed_counter (seq) VALUES (0);

CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);
