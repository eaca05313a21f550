package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const jobColumns = `id, job_id, status, terminal, total_projects, completed_projects, failed_projects,
	projects, source, progress, stage, webhook_deliveries, webhook_missed, poll_count, last_error,
	created_at, updated_at, terminal_at, seq`

type scanner interface{ Scan(dest ...any) error }

// scanJob reads one row of jobColumns. rowid is the row's id, used for cursors.
func scanJob(row scanner) (j Job, rowid int64, err error) {
	var projects string
	var created, updated int64
	var ended, seq sql.NullInt64
	err = row.Scan(&rowid, &j.JobID, &j.Status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
		&j.FailedProjects, &projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
		&j.WebhookMissed, &j.PollCount, &j.LastError, &created, &updated, &ended, &seq)
	if err != nil {
		return Job{}, 0, err
	}
	j.Projects = []Project{}
	if err := json.Unmarshal([]byte(projects), &j.Projects); err != nil {
		return Job{}, 0, fmt.Errorf("job %s: projects: %w", j.JobID, err)
	}
	j.CreatedAt, j.UpdatedAt = fromNanos(created), fromNanos(updated)
	if ended.Valid {
		t := fromNanos(ended.Int64)
		j.TerminalAt = &t
	}
	j.Seq = seq.Int64
	return j, rowid, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// clampNanos is t in unix nanoseconds, saturated at the int64 range (years
// 1678 to 2262) instead of overflowing.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// Job returns the job with the given id, or ErrNotFound.
func (s *Store) Job(ctx context.Context, jobID string) (Job, error) {
	j, _, err := scanJob(s.rdb.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_id = ?`, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return Job{}, fmt.Errorf("%w: %s", ErrNotFound, jobID)
	}
	return j, err
}

// JobWithDeliveries returns the job with its verified webhook deliveries,
// oldest first, or ErrNotFound.
func (s *Store) JobWithDeliveries(ctx context.Context, jobID string) (Job, error) {
	j, err := s.Job(ctx, jobID)
	if err != nil {
		return Job{}, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT received_at, attempt, outcome, d.status
		FROM deliveries d JOIN jobs ON jobs.id = d.job_row WHERE jobs.job_id = ? ORDER BY d.id`, jobID)
	if err != nil {
		return Job{}, err
	}
	defer rows.Close()
	j.Deliveries = []Delivery{}
	for rows.Next() {
		var d Delivery
		var received int64
		var outcome Outcome
		if err := rows.Scan(&received, &d.Attempt, &outcome, &d.Status); err != nil {
			return Job{}, err
		}
		d.ReceivedAt, d.Duplicate = fromNanos(received), outcome.Duplicate()
		j.Deliveries = append(j.Deliveries, d)
	}
	return j, rows.Err()
}

// Track adds a job the log has not heard of, as pending, with its first poll
// due at firstPoll. created is false when the job was already known; either
// way the job is returned as it now stands.
func (s *Store) Track(ctx context.Context, jobID string, firstPoll time.Time) (j Job, created bool, err error) {
	if !ValidJobID(jobID) {
		return Job{}, false, fmt.Errorf("%w: jobId must be 1-128 letters, digits, '-' or '_'", ErrInvalid)
	}
	err = s.write(ctx, func(t *txn) error {
		now := t.now.UnixNano()
		res, err := t.tx.ExecContext(t.ctx, `INSERT INTO jobs (job_id, status, created_at, updated_at, next_poll_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING`, jobID, StatusPending, now, now, firstPoll.UnixNano())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	if err != nil {
		return Job{}, false, err
	}
	j, err = s.Job(context.WithoutCancel(ctx), jobID) // committed: answer as stored
	return j, created, err
}

// Filter selects jobs for ListJobs.
type Filter struct {
	// Statuses keeps jobs with any of these statuses; empty keeps all.
	Statuses []string
	// Since keeps jobs created at or after it; zero keeps all.
	Since time.Time
	// Limit is the page size, 1 to MaxLimit.
	Limit int
	// Cursor is a previous page's NextCursor; empty starts at the newest.
	Cursor string
}

// MaxLimit is the largest page ListJobs and Events return.
const MaxLimit = 500

// ListJobs returns a page of jobs, newest first, and the cursor of the next
// page ("" when this is the last). A bad filter is ErrInvalid.
func (s *Store) ListJobs(ctx context.Context, f Filter) (jobs []Job, next string, err error) {
	if f.Limit < 1 || f.Limit > MaxLimit {
		return nil, "", fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalid, MaxLimit)
	}
	where, args := []string{"1 = 1"}, []any{}
	if f.Cursor != "" {
		before, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || before < 1 {
			return nil, "", fmt.Errorf("%w: cursor %q is not one this API returned", ErrInvalid, f.Cursor)
		}
		where, args = append(where, "id < ?"), append(args, before)
	}
	if len(f.Statuses) > 0 {
		for _, st := range f.Statuses {
			if !IsKnownStatus(st) {
				return nil, "", fmt.Errorf("%w: unknown status %q", ErrInvalid, st)
			}
			args = append(args, st)
		}
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")")
	}
	if !f.Since.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, clampNanos(f.Since))
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, f.Limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	jobs = []Job{}
	var lastID int64
	for rows.Next() {
		j, id, err := scanJob(rows)
		if err != nil {
			return nil, "", err
		}
		if len(jobs) == f.Limit {
			next = strconv.FormatInt(lastID, 10)
			break
		}
		jobs, lastID = append(jobs, j), id
	}
	return jobs, next, rows.Err()
}

// Events returns up to limit jobs that became terminal with seq > after,
// oldest first, and the seq of the last one (after itself when none).
func (s *Store) Events(ctx context.Context, after int64, limit int) (jobs []Job, last int64, err error) {
	if limit < 1 || limit > MaxLimit {
		return nil, 0, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalid, MaxLimit)
	}
	if after < 0 {
		return nil, 0, fmt.Errorf("%w: after must be 0 or more", ErrInvalid)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	jobs, last = []Job{}, after
	for rows.Next() {
		j, _, err := scanJob(rows)
		if err != nil {
			return nil, 0, err
		}
		jobs, last = append(jobs, j), j.Seq
	}
	return jobs, last, rows.Err()
}

// Stats are counts over the whole log.
type Stats struct {
	Jobs           int            `json:"jobs"`
	ByStatus       map[string]int `json:"byStatus"`
	BySource       map[string]int `json:"bySource"`
	Deliveries     int            `json:"deliveries"`
	Duplicates     int            `json:"duplicates"`
	Conflicts      int            `json:"conflicts"`
	Invalid        int            `json:"invalid"`
	WebhooksMissed int            `json:"webhooksMissed"`
	LastSeq        int64          `json:"lastSeq"`
}

// Stats counts jobs by status and source, and deliveries by outcome. It
// reads covering indexes, so its cost grows with the log but stays far below
// a scan of the rows.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{ByStatus: map[string]int{}, BySource: map[string]int{}}
	err := s.groupCount(ctx, `SELECT status, source, COUNT(*) FROM jobs GROUP BY status, source`,
		func(status, source string, n int) {
			st.Jobs += n
			st.ByStatus[status] += n
			if source != "" {
				st.BySource[source] += n
			}
		})
	if err != nil {
		return Stats{}, err
	}
	err = s.groupCount(ctx, `SELECT outcome, '', COUNT(*) FROM deliveries GROUP BY outcome`,
		func(outcome, _ string, n int) {
			st.Deliveries += n
			switch Outcome(outcome) {
			case OutcomeDuplicate:
				st.Duplicates += n
			case OutcomeConflict:
				st.Duplicates += n
				st.Conflicts += n
			case OutcomeInvalid:
				st.Invalid += n
			}
		})
	if err != nil {
		return Stats{}, err
	}
	err = s.rdb.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM jobs WHERE webhook_missed = 1),
		COALESCE((SELECT MAX(seq) FROM jobs), 0)`).Scan(&st.WebhooksMissed, &st.LastSeq)
	return st, err
}

func (s *Store) groupCount(ctx context.Context, query string, add func(a, b string, n int)) error {
	rows, err := s.rdb.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var a, b string
		var n int
		if err := rows.Scan(&a, &b, &n); err != nil {
			return err
		}
		add(a, b, n)
	}
	return rows.Err()
}
