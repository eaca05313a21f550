package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
)

// jobColumns are a job's columns and its forward's, read FROM jobFrom (or
// from jobs joined with any relation of forwards' columns named fw). A job
// not yet ended shows when its next poll is due.
const jobColumns = `jobs.id, jobs.job_id, jobs.status, jobs.terminal, jobs.total_projects,
	jobs.completed_projects, jobs.failed_projects, jobs.projects, jobs.source, jobs.progress, jobs.stage,
	jobs.webhook_deliveries, jobs.webhook_missed, jobs.poll_count, jobs.last_error, jobs.created_at,
	jobs.updated_at, jobs.terminal_at, feed.seq, CASE WHEN jobs.terminal THEN NULL ELSE jobs.next_poll_at END, ` +
	forwardColumns

// forwardColumns are a forward's columns as a job shows them, all NULL when
// the job has none.
const forwardColumns = `fw.state, fw.attempts, fw.last_status, fw.last_error, fw.next_attempt_at,
	fw.delivered_at`

// jobFrom is every job with its forward and feed row, if any.
const jobFrom = `jobs LEFT JOIN forwards fw ON fw.job_row = jobs.id LEFT JOIN feed ON feed.job_row = jobs.id`

// scanJob reads one row of jobColumns, then into extra any columns after
// them; rowid is the row's id.
func scanJob(row pgx.Row, extra ...any) (j store.Job, rowid int64, err error) {
	var projects string
	var created, updated int64
	var ended, seq, nextPoll *int64
	var fw nullForward
	err = row.Scan(append([]any{&rowid, &j.JobID, &j.Status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
		&j.FailedProjects, &projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
		&j.WebhookMissed, &j.PollCount, &j.LastError, &created, &updated, &ended, &seq, &nextPoll,
		&fw.state, &fw.attempts, &fw.lastStatus, &fw.lastError, &fw.next, &fw.delivered}, extra...)...)
	if err != nil {
		return store.Job{}, 0, err
	}
	j.Forward = fw.forward()
	j.Projects = []store.Project{}
	if err := json.Unmarshal([]byte(projects), &j.Projects); err != nil {
		return store.Job{}, 0, fmt.Errorf("job %s: projects: %w", j.JobID, err)
	}
	j.CreatedAt, j.UpdatedAt = fromNanos(created), fromNanos(updated)
	if ended != nil {
		t := fromNanos(*ended)
		j.TerminalAt = &t
	}
	if seq != nil {
		j.Seq = *seq
	}
	if nextPoll != nil {
		t := fromNanos(*nextPoll)
		j.NextPollAt = &t
	}
	return j, rowid, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// clampNanos is t in unix nanoseconds, saturated at the int64 range.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// querier is what a read needs of the pool and of a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Job returns the job with the given id, or store.ErrNotFound.
// A job that has ended is shown with its seq: when the sequencer has not
// numbered it yet, Job runs it and reads the job again.
func (s *Store) Job(ctx context.Context, jobID string) (store.Job, error) {
	j, _, err := s.job(ctx, s.pool, jobID)
	if err == nil && j.Terminal && j.Seq == 0 {
		if err := s.sequenced(ctx); err != nil {
			return store.Job{}, s.dbErr(err)
		}
		j, _, err = s.job(ctx, s.pool, jobID)
	}
	return j, err
}

func (s *Store) job(ctx context.Context, q querier, jobID string) (store.Job, int64, error) {
	j, row, err := scanJob(q.QueryRow(ctx, `SELECT `+jobColumns+` FROM `+jobFrom+` WHERE jobs.job_id = $1`, jobID))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, 0, store.Errorf(store.ENOTFOUND, "job not found: %s", jobID)
	}
	return j, row, s.dbErr(err)
}

// JobWithDeliveries returns the job with its last store.MaxDeliveries
// verified webhook deliveries, oldest first, and DeliveriesTotal set, or
// store.ErrNotFound. Bytes that arrived more than once are listed once, with
// Copies saying how often.
func (s *Store) JobWithDeliveries(ctx context.Context, jobID string) (store.Job, error) {
	j, err := s.jobWithDeliveries(ctx, jobID)
	if err == nil && j.Terminal && j.Seq == 0 { // not numbered yet: number it, read again
		if err := s.sequenced(ctx); err != nil {
			return store.Job{}, s.dbErr(err)
		}
		j, err = s.jobWithDeliveries(ctx, jobID)
	}
	return j, err
}

func (s *Store) jobWithDeliveries(ctx context.Context, jobID string) (store.Job, error) {
	// The job and its deliveries as of one moment.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return store.Job{}, s.dbErr(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	j, row, err := s.job(ctx, tx, jobID)
	if err != nil {
		return store.Job{}, err
	}
	if err := tx.QueryRow(ctx, `SELECT COALESCE(SUM(copies), 0) FROM deliveries WHERE job_row = $1`, row).
		Scan(&j.DeliveriesTotal); err != nil {
		return store.Job{}, s.dbErr(err)
	}
	rows, err := tx.Query(ctx, `SELECT id, received_at, attempt, outcome, status, copies
		FROM deliveries WHERE job_row = $1 ORDER BY id DESC LIMIT $2`, row, store.MaxDeliveries)
	if err != nil {
		return store.Job{}, s.dbErr(err)
	}
	j.Deliveries = []store.Delivery{}
	var d store.Delivery
	var received int64
	var outcome string
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &received, &d.Attempt, &outcome, &d.Status, &d.Copies}, func() error {
		d.ReceivedAt, d.Outcome = fromNanos(received), store.Outcome(outcome)
		d.Duplicate = d.Outcome.Duplicate()
		j.Deliveries = append(j.Deliveries, d)
		return nil
	})
	if err != nil {
		return store.Job{}, s.dbErr(err)
	}
	slices.Reverse(j.Deliveries)
	return j, nil
}

// ListJobs returns a page of jobs, newest first (by the order they were
// first heard of), and the cursor of the next page ("" when this is the
// last). A bad filter is store.ErrInvalid.
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
	var statuses []string
	for _, st := range f.Statuses {
		st := string(st)
		if !store.Status(st).Known() {
			return nil, "", store.Errorf(store.EINVALID, "unknown status %q", st)
		}
		if !slices.Contains(statuses, st) {
			statuses = append(statuses, st)
		}
	}
	since := int64(math.MinInt64)
	if !f.Since.IsZero() {
		since = clampNanos(f.Since)
	}
	q := `SELECT ` + jobColumns + ` FROM ` + jobFrom + ` WHERE jobs.id < $1 AND jobs.created_at >= $2`
	args := []any{before, since, f.Limit + 1}
	if len(statuses) > 0 {
		q += ` AND jobs.status = ANY($4)`
		args = append(args, statuses)
	}
	q += ` ORDER BY jobs.id DESC LIMIT $3`
	jobs, next, err = s.listJobs(ctx, q, f.Limit, args)
	if err != nil {
		return nil, "", s.dbErr(err)
	}
	for _, j := range jobs {
		if j.Terminal && j.Seq == 0 { // not numbered yet: number it, read again
			if err := s.sequenced(ctx); err != nil {
				return nil, "", s.dbErr(err)
			}
			jobs, next, err = s.listJobs(ctx, q, f.Limit, args)
			return jobs, next, s.dbErr(err)
		}
	}
	return jobs, next, nil
}

// listJobs reads a page of ListJobs.
func (s *Store) listJobs(ctx context.Context, q string, limit int, args []any) (jobs []store.Job, next string, err error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	jobs = []store.Job{}
	var lastID int64
	for rows.Next() {
		j, id, err := scanJob(rows)
		if err != nil {
			return nil, "", err
		}
		if len(jobs) == limit {
			next = strconv.FormatInt(lastID, 10)
			break
		}
		jobs, lastID = append(jobs, j), id
	}
	rows.Close()
	return jobs, next, rows.Err()
}

// Events returns up to limit jobs that became terminal with seq > after,
// oldest first, and the seq of the last one (after itself when none). As
// seqs commit in order (see the package comment), a page never skips one
// that commits later. It numbers the ends visible first, so an end
// committed before the call is in the answer.
func (s *Store) Events(ctx context.Context, after int64, limit int) (jobs []store.Job, last int64, err error) {
	if limit < 1 || limit > store.MaxLimit {
		return nil, 0, store.Errorf(store.EINVALID, "limit must be between 1 and %d", store.MaxLimit)
	}
	if after < 0 {
		return nil, 0, store.Errorf(store.EINVALID, "after must be 0 or more")
	}
	if err := s.sequenced(ctx); err != nil {
		return nil, 0, s.dbErr(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+jobColumns+` FROM feed JOIN jobs ON jobs.id = feed.job_row
		LEFT JOIN forwards fw ON fw.job_row = jobs.id WHERE feed.seq > $1 ORDER BY feed.seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, 0, s.dbErr(err)
	}
	defer rows.Close()
	jobs, last = []store.Job{}, after
	for rows.Next() {
		j, _, err := scanJob(rows)
		if err != nil {
			return nil, 0, s.dbErr(err)
		}
		jobs, last = append(jobs, j), j.Seq
	}
	rows.Close()
	return jobs, last, s.dbErr(rows.Err())
}

// Stats reads the counters the write transactions keep, summing each
// over its shards, so it costs the same however long the log is. LastSeq is feed_counter's, which pruning
// never lowers, once the ends visible are numbered.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	st := store.Stats{ByStatus: map[string]int{}, BySource: map[string]int{}}
	if err := s.sequenced(ctx); err != nil {
		return store.Stats{}, s.dbErr(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT name, sum(n)::bigint FROM counters GROUP BY name
		UNION ALL SELECT '', seq FROM feed_counter`)
	if err != nil {
		return store.Stats{}, s.dbErr(err)
	}
	var name string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error {
		kind, value, _ := strings.Cut(name, ":")
		switch {
		case name == "":
			st.LastSeq = n
		case name == missedCounter:
			st.WebhooksMissed = int(n)
		case n == 0:
		case kind == "status":
			st.Jobs += int(n)
			st.ByStatus[value] = int(n)
		case kind == "source":
			st.BySource[value] = int(n)
		case kind == "outcome":
			st.Deliveries += int(n)
			switch store.Outcome(value) {
			case store.OutcomeDuplicate:
				st.Duplicates += int(n)
			case store.OutcomeConflict:
				st.Duplicates += int(n)
				st.Conflicts += int(n)
			case store.OutcomeInvalid:
				st.Invalid += int(n)
			}
		}
		return nil
	})
	if err != nil {
		return store.Stats{}, s.dbErr(err)
	}
	return st, nil
}

// DuePolls returns up to limit jobs that are not terminal and due at now,
// the longest overdue first, so that none starves.
func (s *Store) DuePolls(ctx context.Context, now time.Time, limit int) ([]store.PollTarget, error) {
	rows, err := s.pool.Query(ctx, `SELECT job_id, created_at, next_poll_at, poll_step, fail_count, not_found_count
		FROM jobs WHERE NOT terminal AND next_poll_at <= $1 ORDER BY next_poll_at, id LIMIT $2`, now.UnixNano(), limit)
	if err != nil {
		return nil, s.dbErr(err)
	}
	var out []store.PollTarget
	var p store.PollTarget
	var created, next int64
	_, err = pgx.ForEachRow(rows, []any{&p.JobID, &created, &next, &p.Step, &p.Failures, &p.NotFound}, func() error {
		p.CreatedAt, p.NextPollAt = fromNanos(created), fromNanos(next)
		out = append(out, p)
		return nil
	})
	return out, s.dbErr(err)
}

// NextPollAt is when the soonest job not yet terminal is due; ok is false
// when no job waits for a poll.
func (s *Store) NextPollAt(ctx context.Context) (next time.Time, ok bool, err error) {
	var n *int64
	err = s.pool.QueryRow(ctx, `SELECT MIN(next_poll_at) FROM jobs WHERE NOT terminal`).Scan(&n)
	if err != nil || n == nil {
		return time.Time{}, false, s.dbErr(err)
	}
	return fromNanos(*n), true, nil
}
