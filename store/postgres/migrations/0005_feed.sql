-- The feed's seqs move off the job rows into a table of their own, so that
-- the sequencer numbers an end by updating a small row with two indexes
-- rather than the job's row, whose update rewrites every index of jobs. An
-- ending transaction inserts the job's feed row with seq NULL; the
-- sequencer sets it (see the package comment).
CREATE TABLE feed (
	job_row bigint PRIMARY KEY REFERENCES jobs (id),
	seq     bigint UNIQUE
);
-- The sequencer's work list: the ends not numbered yet.
CREATE INDEX feed_unnumbered ON feed (job_row) WHERE seq IS NULL;
INSERT INTO feed (job_row, seq) SELECT id, seq FROM jobs WHERE terminal;
DROP INDEX jobs_unsequenced;
ALTER TABLE jobs DROP COLUMN seq;
