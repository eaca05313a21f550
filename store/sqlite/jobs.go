package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// jobColumns are a job's columns and its forward's, read FROM jobFrom. A
// job not yet ended shows when its next poll is due.
const jobColumns = `jobs.id, jobs.job_id, jobs.status, jobs.terminal, jobs.total_projects,
	jobs.completed_projects, jobs.failed_projects, jobs.projects, jobs.source, jobs.progress, jobs.stage,
	jobs.webhook_deliveries, jobs.webhook_missed, jobs.poll_count, jobs.last_error, jobs.created_at,
	jobs.updated_at, jobs.terminal_at, jobs.seq, CASE WHEN jobs.terminal THEN NULL ELSE jobs.next_poll_at END,
	f.state, f.attempts, f.last_status, f.last_error, f.next_attempt_at, f.delivered_at`

// jobFrom joins each job to its forward, if it has one.
const jobFrom = ` FROM jobs LEFT JOIN forwards f ON f.job_row = jobs.id`

type scanner interface{ Scan(dest ...any) error }

// scanJob reads one row of jobColumns. rowid is the row's id, used for cursors.
func scanJob(row scanner) (j store.Job, rowid int64, err error) {
	var projects string
	var created, updated int64
	var ended, seq, nextPoll sql.NullInt64
	var fw forwardColumns
	err = row.Scan(&rowid, &j.JobID, &j.Status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
		&j.FailedProjects, &projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
		&j.WebhookMissed, &j.PollCount, &j.LastError, &created, &updated, &ended, &seq, &nextPoll,
		&fw.state, &fw.attempts, &fw.lastStatus, &fw.lastError, &fw.next, &fw.delivered)
	if err != nil {
		return store.Job{}, 0, err
	}
	j.Forward = fw.forward()
	j.Projects = []store.Project{}
	if err := json.Unmarshal([]byte(projects), &j.Projects); err != nil {
		return store.Job{}, 0, fmt.Errorf("job %s: projects: %w", j.JobID, err)
	}
	j.CreatedAt, j.UpdatedAt = fromNanos(created), fromNanos(updated)
	if ended.Valid {
		t := fromNanos(ended.Int64)
		j.TerminalAt = &t
	}
	j.Seq = seq.Int64
	if nextPoll.Valid {
		t := fromNanos(nextPoll.Int64)
		j.NextPollAt = &t
	}
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
func (s *Store) Job(ctx context.Context, jobID string) (store.Job, error) {
	j, _, err := scanJob(s.rdb.QueryRowContext(ctx, `SELECT `+jobColumns+jobFrom+` WHERE jobs.job_id = ?`, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Job{}, store.Errorf(store.ENOTFOUND, "job not found: %s", jobID)
	}
	return j, err
}

// JobWithDeliveries returns the job with its last MaxDeliveries verified
// webhook deliveries, oldest first, and DeliveriesTotal set, or ErrNotFound.
// A delivery whose exact bytes arrived more than once is listed once, with
// Copies saying how often.
func (s *Store) JobWithDeliveries(ctx context.Context, jobID string) (store.Job, error) {
	tx, err := s.rdb.BeginTx(ctx, nil) // the job and its deliveries as of one moment
	if err != nil {
		return store.Job{}, err
	}
	defer tx.Rollback()
	j, row, err := scanJob(tx.QueryRowContext(ctx, `SELECT `+jobColumns+jobFrom+` WHERE jobs.job_id = ?`, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Job{}, store.Errorf(store.ENOTFOUND, "job not found: %s", jobID)
	}
	if err != nil {
		return store.Job{}, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(copies), 0) FROM deliveries WHERE job_row = ?`, row).
		Scan(&j.DeliveriesTotal); err != nil {
		return store.Job{}, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, received_at, attempt, outcome, status, copies
		FROM deliveries WHERE job_row = ? ORDER BY id DESC LIMIT ?`, row, store.MaxDeliveries)
	if err != nil {
		return store.Job{}, err
	}
	defer rows.Close()
	j.Deliveries = []store.Delivery{}
	for rows.Next() {
		var d store.Delivery
		var received int64
		if err := rows.Scan(&d.ID, &received, &d.Attempt, &d.Outcome, &d.Status, &d.Copies); err != nil {
			return store.Job{}, err
		}
		d.ReceivedAt, d.Duplicate = fromNanos(received), d.Outcome.Duplicate()
		j.Deliveries = append(j.Deliveries, d)
	}
	if err := rows.Err(); err != nil {
		return store.Job{}, err
	}
	slices.Reverse(j.Deliveries)
	return j, nil
}

// Track adds a job the log has not heard of, as pending, with its first poll
// due at firstPoll. created is false when the job was already known; either
// way the job is returned as it now stands.
func (s *Store) Track(ctx context.Context, jobID string, firstPoll time.Time) (j store.Job, created bool, err error) {
	if !store.ValidJobID(jobID) {
		return store.Job{}, false, store.Errorf(store.EINVALID, "jobId must be 1-128 letters, digits, '-' or '_'")
	}
	err = s.write(ctx, func(t *txn) error {
		at, err := t.createdAt()
		if err != nil {
			return err
		}
		res, err := t.tx.ExecContext(t.ctx, `INSERT INTO jobs (job_id, status, created_at, updated_at, next_poll_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING`, jobID, store.StatusPending, at,
			t.now.UnixNano(), firstPoll.UnixNano())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if created = n == 1; created {
			t.count(statusCounter(store.StatusPending), 1)
		}
		return err
	})
	if err != nil {
		return store.Job{}, false, err
	}
	j, err = s.Job(context.WithoutCancel(ctx), jobID) // committed: answer as stored
	return j, created, err
}

// ListJobs returns a page of jobs, newest first, and the cursor of the next
// page ("" when this is the last). A bad filter is ErrInvalid.
//
// Every page is an index range: a status filter walks jobs_status (one walk
// per status, merged), and Since becomes a lower bound on the row id, found
// by a binary search over the rows. That holds because created_at never
// decreases in id order (see createdAt); in a log written before that was so,
// a clock that stepped back can put a few jobs on the wrong side of Since.
func (s *Store) ListJobs(ctx context.Context, f store.Filter) (jobs []store.Job, next string, err error) {
	if f.Limit < 1 || f.Limit > store.MaxLimit {
		return nil, "", store.Errorf(store.EINVALID, "limit must be between 1 and %d", store.MaxLimit)
	}
	before := int64(math.MaxInt64)
	if f.Cursor != "" {
		before, err = strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || before < 1 {
			return nil, "", store.Errorf(store.EINVALID, "cursor %q is not one this API returned", f.Cursor)
		}
	}
	var statuses []store.Status
	for _, st := range f.Statuses {
		if !st.Known() {
			return nil, "", store.Errorf(store.EINVALID, "unknown status %q", st)
		}
		if !slices.Contains(statuses, st) {
			statuses = append(statuses, st)
		}
	}
	tx, err := s.rdb.BeginTx(ctx, nil) // the bound and the page from one snapshot
	if err != nil {
		return nil, "", err
	}
	defer tx.Rollback()
	jobs = []store.Job{}
	low := int64(0)
	if !f.Since.IsZero() {
		var ok bool
		if low, ok, err = firstCreatedAtOrAfter(ctx, tx, clampNanos(f.Since)); err != nil || !ok {
			return jobs, "", err
		}
	}
	query, args := listQuery(statuses, low, before, f.Limit+1)
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
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

// listQuery selects up to n jobs with low <= id < before, newest first, with
// any of statuses (all when empty). With several statuses each is walked in
// jobs_status on its own, n at most, and the ids are merged.
func listQuery(statuses []store.Status, low, before int64, n int) (string, []any) {
	// id is the job's: forwards has job_row instead.
	const rng = `id >= ? AND id < ? ORDER BY id DESC LIMIT ?`
	switch len(statuses) {
	case 0:
		return `SELECT ` + jobColumns + jobFrom + ` WHERE ` + rng, []any{low, before, n}
	case 1:
		return `SELECT ` + jobColumns + ` FROM jobs INDEXED BY jobs_status LEFT JOIN forwards f ON f.job_row = jobs.id
			WHERE jobs.status = ? AND ` + rng,
			[]any{statuses[0], low, before, n}
	}
	arms := make([]string, len(statuses))
	args := make([]any, 0, 4*len(statuses)+1)
	for i, st := range statuses {
		arms[i] = `SELECT id FROM (SELECT id FROM jobs INDEXED BY jobs_status WHERE status = ? AND ` + rng + `)`
		args = append(args, st, low, before, n)
	}
	return `SELECT ` + jobColumns + jobFrom + ` WHERE jobs.id IN (` + strings.Join(arms, ` UNION ALL `) +
		`) ORDER BY jobs.id DESC LIMIT ?`, append(args, n)
}

// rowQuerier is what a one-row read needs of *sql.DB and *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// firstCreatedAtOrAfter returns the smallest row id whose job was created at
// or after since (unix nanoseconds); ok is false when there is none. As
// created_at never decreases in id order, "the first row at or after id x
// was created at or after since" holds from some x on, and a binary search
// over x finds it in about log2(rows) probes of the primary key.
func firstCreatedAtOrAfter(ctx context.Context, q rowQuerier, since int64) (id int64, ok bool, err error) {
	const first = `SELECT id, created_at FROM jobs WHERE id >= ? ORDER BY id LIMIT 1`
	var hi, created int64
	err = q.QueryRowContext(ctx, `SELECT id, created_at FROM jobs ORDER BY id DESC LIMIT 1`).Scan(&hi, &created)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && created < since) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	id = hi
	for lo := int64(0); lo < hi; { // row ids start at 1
		mid := lo + (hi-lo)/2
		var row int64
		if err := q.QueryRowContext(ctx, first, mid).Scan(&row, &created); err != nil {
			return 0, false, err // a row exists: hi's
		}
		if created >= since {
			hi, id = mid, row
		} else {
			lo = mid + 1
		}
	}
	return id, true, nil
}

// Events returns up to limit jobs that became terminal with seq > after,
// oldest first, and the seq of the last one (after itself when none).
func (s *Store) Events(ctx context.Context, after int64, limit int) (jobs []store.Job, last int64, err error) {
	if limit < 1 || limit > store.MaxLimit {
		return nil, 0, store.Errorf(store.EINVALID, "limit must be between 1 and %d", store.MaxLimit)
	}
	if after < 0 {
		return nil, 0, store.Errorf(store.EINVALID, "after must be 0 or more")
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+jobColumns+jobFrom+` WHERE jobs.seq > ? ORDER BY jobs.seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	jobs, last = []store.Job{}, after
	for rows.Next() {
		j, _, err := scanJob(rows)
		if err != nil {
			return nil, 0, err
		}
		jobs, last = append(jobs, j), j.Seq
	}
	return jobs, last, rows.Err()
}

// Stats reads the counters the write path keeps, so it costs the same
// however long the log is. They count what is in the log: jobs and
// deliveries removed by Prune leave them. Deliveries counts every verified
// delivery, each copy of a replay included.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	st := store.Stats{ByStatus: map[string]int{}, BySource: map[string]int{}}
	err := s.groupCount(ctx, `SELECT name, '', n FROM counters`, func(name, _ string, n int) {
		kind, value, _ := strings.Cut(name, ":")
		switch {
		case name == seqCounter:
			st.LastSeq = int64(n)
		case name == missedCounter:
			st.WebhooksMissed = n
		case n == 0:
		case kind == "status":
			st.Jobs += n
			st.ByStatus[value] = n
		case kind == "source":
			st.BySource[value] = n
		case kind == "outcome":
			st.Deliveries += n
			switch store.Outcome(value) {
			case store.OutcomeDuplicate:
				st.Duplicates += n
			case store.OutcomeConflict:
				st.Duplicates += n
				st.Conflicts += n
			case store.OutcomeInvalid:
				st.Invalid += n
			}
		}
	})
	if err != nil {
		return store.Stats{}, err
	}
	return st, nil
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
