-- The forwarding queue and a job's timeline.

-- One forward per job that ended while forwarding was on (or that a retry or
-- replay queued). claims is the fencing token: every claim and every requeue
-- moves it, and a result is recorded only under the latest.
CREATE TABLE forwards (
	job_row         bigint  PRIMARY KEY REFERENCES jobs (id),
	seq             bigint  NOT NULL,
	state           text    NOT NULL,
	attempts        integer NOT NULL DEFAULT 0,
	last_status     integer NOT NULL DEFAULT 0,
	last_error      text    NOT NULL DEFAULT '',
	next_attempt_at bigint,
	delivered_at    bigint,
	enqueued_at     bigint  NOT NULL,
	lease_until     bigint,
	claims          bigint  NOT NULL DEFAULT 0
);

-- Claims (state pending, lowest seq first), the queue's pages (state by
-- state, in seq order) and its counts.
CREATE INDEX forwards_state_seq ON forwards (state, seq);
-- The due forwards when the lowest seqs wait out a retry, and the next one
-- due: the unleased pending ones by next attempt, and the few leased ones
-- by lease.
CREATE INDEX forwards_next ON forwards (next_attempt_at) WHERE state = 'pending' AND lease_until IS NULL;
CREATE INDEX forwards_leased ON forwards (lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE forward_attempts (
	id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_row  bigint  NOT NULL REFERENCES jobs (id),
	attempt  integer NOT NULL,
	at       bigint  NOT NULL,
	took_ms  bigint  NOT NULL,
	status   integer NOT NULL,
	error    text    NOT NULL DEFAULT '',
	state    text    NOT NULL
);

CREATE INDEX forward_attempts_job ON forward_attempts (job_row, id);

-- Every recorded poll of a job: status '' when the poll got no usable answer.
CREATE TABLE polls (
	id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_row  bigint  NOT NULL REFERENCES jobs (id),
	at       bigint  NOT NULL,
	status   text    NOT NULL DEFAULT '',
	error    text    NOT NULL DEFAULT '',
	ended    boolean NOT NULL DEFAULT false
);

CREATE INDEX polls_job ON polls (job_row, id);

-- The pause of all forwarding: one row, reason NULL while not paused.
CREATE TABLE forward_pause (
	one    boolean PRIMARY KEY DEFAULT true CHECK (one),
	reason text
);
INSERT INTO forward_pause DEFAULT VALUES;
