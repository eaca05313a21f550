-- The oldest waiting forward, for the stats, is read from an index of the
-- waiting forwards only (pending and paused), in place of one of every
-- forward by state: a forward that is delivered or fails leaves it, rather
-- than moving to another part of it in the same write, and it stays as
-- small as the queue.
DROP INDEX forwards_enqueued;
CREATE INDEX forwards_waiting ON forwards (enqueued_at) WHERE state IN ('pending', 'paused');
