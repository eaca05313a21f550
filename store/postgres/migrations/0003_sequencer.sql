-- The transaction that ends a job no longer takes its seq: it commits the
-- job (and its forward) with seq NULL, and the sequencer numbers the ends
-- that are visible (see the package comment). Its work list is this index.
CREATE INDEX jobs_unsequenced ON jobs (terminal_at, id) WHERE terminal AND seq IS NULL;
ALTER TABLE forwards ALTER COLUMN seq DROP NOT NULL;
