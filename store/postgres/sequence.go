package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// seqLinger is how long a run that a local commit asked for waits for
// more ends before it starts, so that one run numbers the ends of several
// commits.
const seqLinger = 25 * time.Millisecond

// seqBatch bounds the ends one run of the sequencer numbers in one
// transaction; a run takes as many as it needs.
const seqBatch = 5000

// unsequenced is true while some job has ended without a seq yet; it reads
// the partial index feed_unnumbered, which holds only those, from
// feed_counter's floor on (see sequenceSQL).
const unsequenced = `SELECT EXISTS (SELECT 1 FROM feed WHERE seq IS NULL AND xid >= (SELECT floor FROM feed_counter))`

// sequenceSQL numbers up to $2 visible ends that have no seq (feed rows
// with seq NULL), oldest terminal_at (then row) first, from the seq after
// feed_counter's, gives each its forward's seq too, moves feed_counter to
// the last, and sends one NOTIFY on channel $1 with it. It returns the last
// seq and how many it numbered. It must run after feed_counter's row is
// locked, in a statement of its own, so that its snapshot holds every run
// that committed before.
//
// It looks only at ends inserted by transactions from feed_counter's floor
// on, and, when it numbered every end it saw, raises the floor to its
// snapshot's xmin: every transaction below that had ended when the snapshot
// was taken, so each end one of them inserted was visible, and is numbered
// now. An end still in flight belongs to a transaction at or above the
// floor. So a run reads the ends in flight and those numbered since the
// floor last moved, never the numbered ends that the partial index keeps
// until vacuum.
const sequenceSQL = `WITH n AS (
		SELECT id, (SELECT seq FROM feed_counter) + row_number() OVER (ORDER BY terminal_at, id) AS seq
		FROM (SELECT jobs.id, jobs.terminal_at FROM feed JOIN jobs ON jobs.id = feed.job_row
			WHERE feed.seq IS NULL AND feed.xid >= (SELECT floor FROM feed_counter)
			ORDER BY jobs.terminal_at, jobs.id LIMIT $2) AS u),
	j AS (UPDATE feed SET seq = n.seq FROM n WHERE feed.job_row = n.id RETURNING feed.job_row AS id, n.seq),
	f AS (UPDATE forwards SET seq = j.seq FROM j WHERE forwards.job_row = j.id),
	m AS (SELECT max(seq) AS last, count(*) AS numbered FROM j),
	c AS (UPDATE feed_counter SET seq = COALESCE(m.last, feed_counter.seq),
		floor = CASE WHEN m.numbered < $2 THEN GREATEST(feed_counter.floor, pg_snapshot_xmin(pg_current_snapshot()))
			ELSE feed_counter.floor END
		FROM m RETURNING feed_counter.seq, m.numbered)
	SELECT c.numbered, CASE WHEN c.numbered > 0 THEN pg_notify($1, c.seq::text) END::text FROM c`

// sequenceOnce runs the sequencer once: one transaction, sent as one
// pipelined batch, that locks feed_counter's row and numbers the ends
// visible then. It returns how many it numbered.
func (s *Store) sequenceOnce(ctx context.Context) (int, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT seq FROM feed_counter FOR UPDATE`)
	b.Queue(sequenceSQL, feedChannel, seqBatch)
	// A batch with no BEGIN runs as one implicit transaction: the lock is
	// held until its commit, and each statement takes its own snapshot.
	res := s.pool.SendBatch(ctx, b)
	_, lockErr := res.Exec()
	var n int64
	var note *string
	err := res.QueryRow().Scan(&n, &note)
	closeErr := res.Close()
	switch {
	case lockErr != nil:
		return 0, fmt.Errorf("sequence: lock feed_counter: %w", lockErr)
	case err != nil:
		return 0, fmt.Errorf("sequence: %w", err)
	case closeErr != nil:
		return 0, fmt.Errorf("sequence: %w", closeErr)
	}
	return int(n), nil
}

// sequence numbers every end visible when it starts, retrying a deadlock
// (an end's transaction can hold a job row the run updates while waiting
// for one the run holds) twice, under this replica's seqMu so that its
// readers and its loop do not queue on feed_counter one behind the other.
// It wakes the local feed when it numbered any; the NOTIFY wakes the other
// replicas'.
func (s *Store) sequence(ctx context.Context) error {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	return s.sequenceLocked(ctx)
}

func (s *Store) sequenceLocked(ctx context.Context) error {
	total := 0
	defer func() {
		if total > 0 {
			s.kick()
		}
	}()
	for attempt := 0; ; {
		n, err := s.sequenceOnce(ctx)
		total += n
		switch {
		case err != nil && retryable(err) && attempt < 2:
			attempt++
		case err != nil:
			return err
		case n < seqBatch:
			return nil
		}
	}
}

// sequenced makes sure that every end visible when it is called has its
// seq: it costs one index probe when none waits for one, which is the case
// a few milliseconds after any commit (seqLoop). Reads that show seqs call
// it first.
func (s *Store) sequenced(ctx context.Context) error {
	var due bool
	if err := s.pool.QueryRow(ctx, unsequenced).Scan(&due); err != nil || !due {
		return err
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	// Another run may have numbered them while this one waited.
	if err := s.pool.QueryRow(ctx, unsequenced).Scan(&due); err != nil || !due {
		return err
	}
	return s.sequenceLocked(ctx)
}

// kickSeq asks seqLoop for a run; kicks while one is pending merge.
func (s *Store) kickSeq() {
	select {
	case s.seqCh <- struct{}{}:
	default:
	}
}

// seqLoop numbers ends as soon as this replica's writers commit them
// (kickSeq), and every backstop interval whatever happens, so that ends
// committed by a replica that died before numbering them get their seqs
// within a second from any other.
func (s *Store) seqLoop(ctx context.Context) {
	s.loop(ctx, s.seqCh, "numbering ended jobs failed", func(ctx context.Context, kicked bool) error {
		if kicked {
			// Let the ends committing at this moment join the run.
			t := time.NewTimer(seqLinger)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			return s.sequence(ctx)
		}
		return s.sequenced(ctx)
	})
}
