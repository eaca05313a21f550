package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/nouvelhook/nouvelhook/store"
)

// recordPollRow appends a poll of the job at row to its timeline: one row
// for each poll counted in the job's poll_count.
func (t *txn) recordPollRow(row int64, status store.Status, pollErr string, ended bool) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO polls (job_row, at, status, error, ended) VALUES (?, ?, ?, ?, ?)`,
		row, t.now.UnixNano(), status, pollErr, ended)
	return err
}

// JobPolls returns the job's last MaxDeliveries polls, oldest first, or
// ErrNotFound for an unknown job.
func (s *Store) JobPolls(ctx context.Context, jobID string) ([]store.PollRecord, error) {
	return lastOfJob(ctx, s, jobID, `SELECT at, status, error, ended FROM polls`,
		func(rows *sql.Rows) (store.PollRecord, error) {
			var p store.PollRecord
			var at int64
			err := rows.Scan(&at, &p.Status, &p.Error, &p.Ended)
			p.At = fromNanos(at)
			return p, err
		})
}

// lastOfJob reads the last MaxDeliveries rows of a job's log (polls or
// forward attempts), oldest first: query selects from the log, which has
// job_row and id columns, and scan reads one row. An unknown job is
// ErrNotFound.
func lastOfJob[T any](ctx context.Context, s *Store, jobID, query string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	tx, err := s.rdb.BeginTx(ctx, nil) // the job and its log from one snapshot
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var row int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM jobs WHERE job_id = ?`, jobID).Scan(&row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.Errorf(store.ENOTFOUND, "job not found: %s", jobID)
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, query+` WHERE job_row = ? ORDER BY id DESC LIMIT ?`, row, store.MaxDeliveries)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// DeliveryBody returns the exact bytes of the job's delivery with the given
// id, or ErrNotFound when the job has no such delivery.
func (s *Store) DeliveryBody(ctx context.Context, jobID string, id int64) ([]byte, error) {
	var body []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT d.body FROM deliveries d JOIN jobs ON jobs.id = d.job_row
		WHERE d.id = ? AND jobs.job_id = ?`, id, jobID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.Errorf(store.ENOTFOUND, "job %s has no delivery %d", jobID, id)
	}
	if err != nil {
		return nil, err
	}
	if body == nil {
		body = []byte{}
	}
	return body, nil
}
