-- Ends commit in parallel: the transaction that ends a job no longer takes
-- its seq, and counters no longer make every commit queue on one row.
--
-- The feed's seqs live in a table of their own. An ending transaction
-- inserts the job's feed row with seq NULL; the sequencer numbers the ends
-- that are visible (see the package comment), updating this small row
-- rather than the job's, whose update rewrites every index of jobs.
CREATE TABLE feed (
	job_row bigint PRIMARY KEY REFERENCES jobs (id),
	seq     bigint UNIQUE
);
-- The sequencer's work list: the ends not numbered yet.
CREATE INDEX feed_unnumbered ON feed (job_row) WHERE seq IS NULL;
INSERT INTO feed (job_row, seq) SELECT id, seq FROM jobs WHERE terminal;
ALTER TABLE jobs DROP COLUMN seq;
-- A forward is queued with its job's end, before the sequencer numbers it.
ALTER TABLE forwards ALTER COLUMN seq DROP NOT NULL;

-- Counters are kept in shards: each writer adds its changes to rows of its
-- own shard, so that concurrent commits do not queue on one row per name.
-- A count is the sum of its shards; the counts so far become shard 0.
ALTER TABLE counters ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE counters DROP CONSTRAINT counters_pkey;
ALTER TABLE counters ADD PRIMARY KEY (name, shard);
