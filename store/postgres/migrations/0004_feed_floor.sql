-- The sequencer looks for unnumbered ends above a floor, so that its cost
-- follows the ends in flight rather than all the ends since the last
-- vacuum. A numbered end leaves an index entry behind in the partial index
-- of unnumbered ends until vacuum removes it, and a scan of that index from
-- its start read every one of them.
--
-- Each feed row records the transaction that inserted it (xid). Once the
-- sequencer has numbered every visible end, every end inserted by a
-- transaction older than its snapshot's xmin is numbered, as such a
-- transaction had ended: feed_counter.floor keeps that xmin, and later runs
-- look only at ends of transactions from the floor on.
ALTER TABLE feed ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE feed_counter ADD COLUMN floor xid8 NOT NULL DEFAULT '0';
DROP INDEX feed_unnumbered;
CREATE INDEX feed_unnumbered ON feed (xid) WHERE seq IS NULL;
