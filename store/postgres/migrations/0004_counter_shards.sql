-- Counters are kept in shards: each writer adds its changes to rows of its
-- own shard, so that concurrent commits do not queue on one row per name.
-- A count is the sum of its shards; the counts so far become shard 0.
ALTER TABLE counters ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE counters DROP CONSTRAINT counters_pkey;
ALTER TABLE counters ADD PRIMARY KEY (name, shard);
