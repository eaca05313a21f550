package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Prune deletes up to batch jobs that ended before cutoff, with their
// deliveries, forwards, forward attempts and polls, in one write, and
// returns how many jobs it deleted; a caller that wants everything past the
// cutoff gone calls it until that is below batch. It also deletes up to
// batch signed deliveries that named no usable job and last arrived before
// cutoff.
//
// Jobs go in seq order, the order they ended, through the seq index, and
// pruning stops at the first job that ended at or after cutoff, so no job
// ended later is ever removed. A job whose forward waits to be sent
// (pending or paused) is passed over and kept until it is delivered or
// failed; the walk steps over such jobs, so a long backlog of them makes
// each call read through it. Seq is given out from a counter, not from the
// jobs that remain, so it is never reused, even when every job is pruned.
// The counters behind Stats count what is in the log: pruned jobs and their
// deliveries leave them (LastSeq does not move).
//
// When nothing is old enough it reads the seq index up to the first job not
// waiting on its forward, and takes no turn of the writer.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, batch int) (deleted int, err error) {
	if batch < 1 {
		return 0, store.Errorf(store.EINVALID, "prune batch must be 1 or more")
	}
	before := clampNanos(cutoff)
	if due, err := s.pruneDue(ctx, before); err != nil || !due {
		return 0, err
	}
	err = s.write(ctx, func(t *txn) error {
		deleted = 0
		if err := t.flushForwards(); err != nil { // a forward waiting keeps its job
			return err
		}
		n, err := t.pruneJobs(before, batch)
		if err != nil {
			return err
		}
		if err := t.pruneUnjobbed(before, batch); err != nil {
			return err
		}
		deleted = n
		return nil
	})
	return deleted, err
}

// pruneUnjobbedDue selects signed deliveries with no job that last arrived
// before ?, through the partial index that holds only those.
const pruneUnjobbedDue = `SELECT id FROM deliveries INDEXED BY deliveries_unjobbed
	WHERE job_row IS NULL AND COALESCE(last_received_at, received_at) < ?`

// keepsNoForward holds for a job whose forward is not waiting to be sent:
// retention never removes a forward before the app has it (or it failed).
const keepsNoForward = `NOT EXISTS (SELECT 1 FROM forwards f WHERE f.job_row = jobs.id
	AND f.state IN ('pending', 'paused'))`

// pruneOldest selects the jobs that ended first, through the seq index.
const pruneOldest = `SELECT id, status, source, webhook_missed, terminal_at FROM jobs
	WHERE seq IS NOT NULL AND ` + keepsNoForward + ` ORDER BY seq LIMIT ?`

// pruneDue reports whether Prune has anything to delete.
func (s *Store) pruneDue(ctx context.Context, before int64) (bool, error) {
	var ended sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT terminal_at FROM jobs WHERE seq IS NOT NULL AND `+keepsNoForward+` ORDER BY seq LIMIT 1`).Scan(&ended)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if ended.Valid && ended.Int64 < before {
		return true, nil
	}
	var n int
	err = s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+pruneUnjobbedDue+` LIMIT 1)`, before).Scan(&n)
	return n > 0, err
}

// pruneJobs deletes up to batch jobs that ended before before, with their
// deliveries, and takes them out of the counters.
func (t *txn) pruneJobs(before int64, batch int) (int, error) {
	rows, err := t.tx.QueryContext(t.ctx, pruneOldest, batch)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id, ended int64
		var status store.Status
		var source string
		var missed bool
		if err := rows.Scan(&id, &status, &source, &missed, &ended); err != nil {
			rows.Close()
			return 0, err
		}
		if ended >= before {
			break // ended too recently; so, nearly always, did all that follow
		}
		ids = append(ids, id)
		t.count(statusCounter(status), -1)
		if source != "" {
			t.count(sourceCounter(source), -1)
		}
		if missed {
			t.count(missedCounter, -1)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return 0, err
	}
	// Deliveries first: they reference their job.
	dels, err := t.tx.QueryContext(t.ctx, `DELETE FROM deliveries
		WHERE job_row IN (SELECT value FROM json_each(?)) RETURNING outcome, copies`, string(list))
	if err != nil {
		return 0, err
	}
	if err := t.uncount(dels); err != nil {
		return 0, err
	}
	// The job's forward, its attempts and its polls go with it.
	if err := t.uncountForwards(`DELETE FROM forwards WHERE job_row IN (SELECT value FROM json_each(?))
		RETURNING state`, string(list)); err != nil {
		return 0, err
	}
	for _, table := range []string{"forward_attempts", "polls", "jobs"} {
		column := "job_row"
		if table == "jobs" {
			column = "id"
		}
		if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM `+table+` WHERE `+column+
			` IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// pruneUnjobbed deletes up to batch signed deliveries that named no usable
// job and last arrived before before.
func (t *txn) pruneUnjobbed(before int64, batch int) error {
	rows, err := t.tx.QueryContext(t.ctx, `DELETE FROM deliveries WHERE id IN (`+pruneUnjobbedDue+` LIMIT ?)
		RETURNING outcome, copies`, before, batch)
	if err != nil {
		return err
	}
	return t.uncount(rows)
}

// uncount takes deleted deliveries, as (outcome, copies) rows, out of the
// counters, and closes rows.
func (t *txn) uncount(rows *sql.Rows) error {
	for rows.Next() {
		var outcome store.Outcome
		var copies int64
		if err := rows.Scan(&outcome, &copies); err != nil {
			rows.Close()
			return err
		}
		// The first arrival has the row's outcome; a copy of bytes that
		// ended the job found it ended the same way, and any other copy
		// fared as the first did.
		t.count(outcomeCounter(outcome), -1)
		if again := outcome; copies > 1 {
			if again == store.OutcomeAccepted {
				again = store.OutcomeDuplicate
			}
			t.count(outcomeCounter(again), 1-copies)
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}
