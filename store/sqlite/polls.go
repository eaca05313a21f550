package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// DuePolls returns up to limit jobs that are not terminal and due at now,
// the longest overdue first, so that none starves.
func (s *Store) DuePolls(ctx context.Context, now time.Time, limit int) ([]store.PollTarget, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT job_id, created_at, next_poll_at, poll_step, fail_count, not_found_count
		FROM jobs WHERE terminal = 0 AND next_poll_at <= ? ORDER BY next_poll_at, id LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.PollTarget
	for rows.Next() {
		var p store.PollTarget
		var created, next int64
		if err := rows.Scan(&p.JobID, &created, &next, &p.Step, &p.Failures, &p.NotFound); err != nil {
			return nil, err
		}
		p.CreatedAt, p.NextPollAt = fromNanos(created), fromNanos(next)
		out = append(out, p)
	}
	return out, rows.Err()
}

// NextPollAt is when the soonest job not yet terminal is due; ok is false
// when no job waits for a poll.
func (s *Store) NextPollAt(ctx context.Context) (next time.Time, ok bool, err error) {
	var n sql.NullInt64
	err = s.rdb.QueryRowContext(ctx, `SELECT MIN(next_poll_at) FROM jobs WHERE terminal = 0`).Scan(&n)
	if err != nil || !n.Valid {
		return time.Time{}, false, err
	}
	return fromNanos(n.Int64), true, nil
}

// RecordPoll commits a poll of jobID. A terminal Report goes through the same
// path as a webhook, with source poll, so the job ends once whichever comes
// first; the outcome says which. An error wrapping ErrUnavailable means
// nothing was stored.
func (s *Store) RecordPoll(ctx context.Context, jobID string, r store.PollResult) (store.Outcome, error) {
	end := r.Report
	if r.End != "" {
		end = &store.Report{JobID: jobID, Status: r.End}
	}
	if end != nil && !end.Status.Terminal() {
		end = nil
	}
	projects := "[]"
	if end != nil {
		var err error
		if projects, err = store.EncodeProjects(end.Projects); err != nil {
			return "", err
		}
	}
	var outcome store.Outcome
	err := s.write(ctx, func(t *txn) error {
		now := t.now.UnixNano()
		var said store.Status // what Nouvel said, for the timeline
		if r.Report != nil {
			said = r.Report.Status
		}
		if end != nil {
			var err error
			var row int64
			if outcome, row, err = t.endJob(end, projects, store.SourcePoll); err != nil {
				return err
			}
			_, err = t.tx.ExecContext(t.ctx, `UPDATE jobs SET poll_count = poll_count + 1, last_error = ?,
				poll_ended_at = CASE WHEN ? AND poll_ended_at IS NULL THEN ? ELSE poll_ended_at END
				WHERE id = ?`, r.Err, r.End == "", now, row)
			if err != nil {
				return err
			}
			return t.recordPollRow(row, said, r.Err, outcome == store.OutcomeAccepted)
		}
		q := `UPDATE jobs SET poll_count = poll_count + 1, last_error = ?, next_poll_at = ?, updated_at = ?`
		args := []any{r.Err, r.Next.UnixNano(), now}
		switch {
		case r.Report != nil:
			// The status counters move with the status: read the old one.
			var was store.Status
			err := t.tx.QueryRowContext(t.ctx, `SELECT status FROM jobs WHERE job_id = ? AND terminal = 0`, jobID).Scan(&was)
			if errors.Is(err, sql.ErrNoRows) {
				return nil // unknown, or ended meanwhile: a stale poll changes nothing
			}
			if err != nil {
				return err
			}
			if was != r.Report.Status {
				t.count(statusCounter(was), -1)
				t.count(statusCounter(r.Report.Status), 1)
			}
			q += `, status = ?, progress = ?, stage = ?, total_projects = ?, completed_projects = ?,
				failed_projects = ?, poll_step = poll_step + 1, fail_count = 0, not_found_count = 0`
			args = append(args, r.Report.Status, r.Report.Progress, r.Report.Stage, r.Report.TotalProjects,
				r.Report.CompletedProjects, r.Report.FailedProjects)
		case r.NotFound:
			q += `, not_found_count = not_found_count + 1, fail_count = 0`
		case r.Failed:
			q += `, fail_count = fail_count + 1`
		}
		var row int64
		err := t.tx.QueryRowContext(t.ctx, q+` WHERE job_id = ? AND terminal = 0 RETURNING id`, append(args, jobID)...).Scan(&row)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // unknown, or ended meanwhile
		}
		if err != nil {
			return err
		}
		return t.recordPollRow(row, said, r.Err, false)
	})
	return outcome, err
}

// The sweep's statements; each reads a partial index that holds only the
// jobs it may act on.
const (
	expireDue  = `SELECT job_id FROM jobs WHERE terminal = 0 AND created_at <= ? ORDER BY created_at, id`
	missedDue  = `FROM jobs WHERE poll_ended_at IS NOT NULL AND missed_checked = 0 AND poll_ended_at <= ?`
	markMissed = `UPDATE jobs SET missed_checked = 1,
		webhook_missed = NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_row = jobs.id
			AND d.outcome != 'invalid' AND d.received_at <= jobs.poll_ended_at + ?)
		WHERE id IN (SELECT id ` + missedDue + `) RETURNING webhook_missed`
)

// ExpireJobs ends as expired every job still not terminal that was tracked
// at or before cutoff, and returns their ids. It walks jobs_open_created,
// which holds only jobs not yet terminal, and takes no turn of the writer
// when none is due.
func (s *Store) ExpireJobs(ctx context.Context, cutoff time.Time) ([]string, error) {
	const due = expireDue
	var found int
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+due+` LIMIT 1)`, cutoff.UnixNano()).Scan(&found)
	if err != nil || found == 0 {
		return nil, err
	}
	var expired []string
	err = s.write(ctx, func(t *txn) error {
		expired = expired[:0]
		rows, err := t.tx.QueryContext(t.ctx, due, cutoff.UnixNano())
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			expired = append(expired, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, id := range expired {
			if _, _, err := t.endJob(&store.Report{JobID: id, Status: store.StatusExpired}, "[]", store.SourcePoll); err != nil {
				return fmt.Errorf("expire %s: %w", id, err)
			}
		}
		return nil
	})
	return expired, err
}

// MarkMissedWebhooks checks, once each, the jobs whose end a poll saw at or
// before now-grace, flags those with no verified webhook received within
// grace of that, and returns how many it flagged. A checked job leaves
// jobs_missed_due, so a sweep with nothing to check is one index probe and
// takes no turn of the writer.
func (s *Store) MarkMissedWebhooks(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	cutoff := now.Add(-grace).UnixNano()
	const due = missedDue
	var found int
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 `+due+` LIMIT 1)`, cutoff).Scan(&found)
	if err != nil || found == 0 {
		return 0, err
	}
	var n int
	err = s.write(ctx, func(t *txn) error {
		n = 0
		rows, err := t.tx.QueryContext(t.ctx, markMissed, grace.Nanoseconds(), cutoff)
		if err != nil {
			return err
		}
		for rows.Next() {
			var missed bool
			if err := rows.Scan(&missed); err != nil {
				rows.Close()
				return err
			}
			if missed {
				n++
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		t.count(missedCounter, int64(n))
		return nil
	})
	return n, err
}
