-- Forwarding to the app, and a job's timeline. Times are unix nanoseconds,
-- UTC, as everywhere else.

-- One forward per job, queued by the transaction that ends the job (when
-- forwarding is on), or by a retry or replay.
CREATE TABLE forwards (
	job_row         INTEGER PRIMARY KEY REFERENCES jobs (id),
	-- The job's seq: claims and the queue go in this order.
	seq             INTEGER NOT NULL,
	-- pending, delivered, failed or paused.
	state           TEXT    NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	last_status     INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	-- When a pending forward is due; NULL in the other states.
	next_attempt_at INTEGER,
	delivered_at    INTEGER,
	enqueued_at     INTEGER NOT NULL,
	-- The end of the lease a claim holds; NULL when not leased.
	lease_until     INTEGER,
	-- The fencing token: +1 on every claim and on every requeue, so that
	-- a result recorded under an older one is refused.
	claims          INTEGER NOT NULL DEFAULT 0
);

-- Claims walk the pending forwards by seq; the queue's pages walk each
-- state by seq. How many are in each state is kept in counters
-- (forward:<state>), by the writes that move them.
CREATE INDEX forwards_state ON forwards (state, seq);
-- The oldest waiting forward, for the stats, without a walk of the queue.
CREATE INDEX forwards_enqueued ON forwards (state, enqueued_at);
-- When the next forward is due: the soonest unleased pending one, and the
-- few leased ones. A claim reads the due ones here, with their seq, when
-- the lowest pending seqs are waiting out a retry.
CREATE INDEX forwards_next ON forwards (next_attempt_at, seq) WHERE state = 'pending' AND lease_until IS NULL;
CREATE INDEX forwards_leased ON forwards (lease_until) WHERE lease_until IS NOT NULL;

-- Every recorded attempt of a forward, for the job's timeline.
CREATE TABLE forward_attempts (
	id      INTEGER PRIMARY KEY,
	job_row INTEGER NOT NULL REFERENCES jobs (id),
	attempt INTEGER NOT NULL,
	at      INTEGER NOT NULL,
	took_ms INTEGER NOT NULL,
	status  INTEGER NOT NULL,
	error   TEXT    NOT NULL DEFAULT '',
	-- What the forward became: pending, delivered, failed or paused.
	state   TEXT    NOT NULL
);
CREATE INDEX forward_attempts_job ON forward_attempts (job_row, id);

-- Every poll counted in a job's poll_count, for its timeline.
CREATE TABLE polls (
	id      INTEGER PRIMARY KEY,
	job_row INTEGER NOT NULL REFERENCES jobs (id),
	at      INTEGER NOT NULL,
	-- What Nouvel said the status was; '' when the poll got no usable answer.
	status  TEXT    NOT NULL DEFAULT '',
	error   TEXT    NOT NULL DEFAULT '',
	-- 1 when this poll ended the job.
	ended   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX polls_job ON polls (job_row, id);
