package postgres

// The forwarding queue is shared by every replica on the database. A claim
// is a lease written in the forward's row (lease_until) and a fencing token
// (claims, moved by every claim and requeue), so a replica that dies holding
// a claim delays its forward until the lease ends, and one that comes back
// late finds its result refused. Claims, results and the admin's requeues
// run in transactions of their own, outside the group commit, so that the
// forwarder never holds the counter rows webhooks commit through.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
)

// nullForward is a forward's columns as a LEFT JOIN gives them: all NULL
// for a job with none.
type nullForward struct {
	state                *string
	attempts, lastStatus *int32
	lastError            *string
	next, delivered      *int64
}

func (f nullForward) forward() *store.Forward {
	if f.state == nil {
		return nil
	}
	fw := &store.Forward{State: store.ForwardState(*f.state)}
	if f.attempts != nil {
		fw.Attempts = int(*f.attempts)
	}
	if f.lastStatus != nil {
		fw.LastStatus = int(*f.lastStatus)
	}
	if f.lastError != nil {
		fw.LastError = *f.lastError
	}
	if f.next != nil && fw.State == store.ForwardPending {
		t := fromNanos(*f.next)
		fw.NextAttemptAt = &t
	}
	if f.delivered != nil {
		t := fromNanos(*f.delivered)
		fw.DeliveredAt = &t
	}
	return fw
}

// bounded runs fn, a write of the queue outside the group commit, with a
// context bounded by writeTimeout, and turns its error into one safe to
// show.
func (s *Store) bounded(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return errClosed()
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return s.dbErr(fn(ctx))
}

func errClosed() error { return store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed") }

// inTx runs fn in a transaction of its own, retrying a deadlock or a
// serialization failure twice, and bounded by writeTimeout.
func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return s.bounded(ctx, func(ctx context.Context) error {
		for attempt := 0; ; attempt++ {
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
			if err == nil || attempt == 2 || !retryable(err) {
				return err
			}
		}
	})
}

// notPaused is true while forwarding is not paused.
const notPaused = `NOT EXISTS (SELECT 1 FROM forward_pause WHERE reason IS NOT NULL)`

// claimSQL leases the forwards whose job_row the query chosen returns ($1:
// lease_until) and reads each with its job and new token. The relation of
// the updated forwards is named fw, as jobColumns expects.
func claimSQL(chosen string) string {
	return `WITH c AS (` + chosen + `),
		fw AS (UPDATE forwards SET lease_until = $1, claims = forwards.claims + 1 FROM c
			WHERE forwards.job_row = c.job_row RETURNING forwards.*)
		SELECT ` + jobColumns + `, fw.claims FROM fw JOIN jobs ON jobs.id = fw.job_row
		LEFT JOIN feed ON feed.job_row = jobs.id ORDER BY fw.seq`
}

// isDue is true of a pending forward due at $2 that no lease holds, once
// the sequencer has given it its seq.
const isDue = `state = 'pending' AND seq IS NOT NULL AND next_attempt_at <= $2 AND
	(lease_until IS NULL OR lease_until <= $2)`

// claimWalk is how many pending forwards, in seq order, a claim looks at
// for due ones before it looks them up by time instead.
const claimWalk = 64

// dueInWalk says whether the first claimWalk pending forwards in seq order
// hold $2 due at $1 or are all there are: then claimDue finds its answer
// among them. Otherwise the lowest seqs wait out a retry (the app is down,
// say), and walking past them on every claim would cost the whole backlog.
var dueInWalk = `SELECT count(*) FILTER (WHERE next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1))
	>= $2 OR count(*) < ` + strconv.Itoa(claimWalk) + ` FROM (SELECT next_attempt_at, lease_until FROM forwards
	WHERE state = 'pending' AND seq IS NOT NULL ORDER BY seq LIMIT ` + strconv.Itoa(claimWalk) + `) AS w`

// claimDue chooses up to $3 due forwards at $2, lowest seq first, walking
// the pending ones in seq order and skipping those another claim holds
// locked at this moment, so that replicas claiming together take different
// forwards rather than queue on the same.
var claimDue = claimSQL(`SELECT job_row FROM forwards WHERE ` + isDue + ` AND ` + notPaused + `
	ORDER BY seq LIMIT $3 FOR UPDATE OF forwards SKIP LOCKED`)

// claimDueByTime chooses the same as claimDue, but finds the due forwards
// through forwards_next and forwards_leased rather than by walking seqs,
// and takes the lowest seqs of them. It looks at a few more than $3, as
// other replicas may be claiming the same ones.
var claimDueByTime = claimSQL(`SELECT job_row FROM forwards WHERE job_row = ANY(ARRAY(
		SELECT job_row FROM (
			SELECT job_row, seq FROM forwards
				WHERE state = 'pending' AND lease_until IS NULL AND next_attempt_at <= $2 AND seq IS NOT NULL
			UNION ALL
			SELECT job_row, seq FROM forwards
				WHERE lease_until <= $2 AND state = 'pending' AND next_attempt_at <= $2 AND seq IS NOT NULL) AS d
		ORDER BY seq LIMIT 2 * $3 + 8))
	AND ` + isDue + ` AND ` + notPaused + `
	ORDER BY seq LIMIT $3 FOR UPDATE OF forwards SKIP LOCKED`)

// claimOne leases the forward of job row $2.
var claimOne = claimSQL(`SELECT $2::bigint AS job_row`)

// ClaimForwards leases up to n pending forwards due at now until now+lease,
// lowest seq first (see store.Forwards). Unordered, it skips rows other
// replicas are claiming at that moment; ordered, it locks the pending
// forward with the lowest seq, waiting for any other lock on it (skipping
// it would send the next one first), and claims it only if it is due and
// free.
func (s *Store) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	if n < 1 {
		return nil, store.Errorf(store.EINVALID, "claim at least one forward, not %d", n)
	}
	if lease <= 0 {
		return nil, store.Errorf(store.EINVALID, "a forward's lease must be positive, not %s", lease)
	}
	at, until := clampNanos(now), clampNanos(now.Add(lease))
	if s.closed.Load() {
		return nil, errClosed()
	}
	// A forward is claimed in seq order, so only once it has its seq.
	if err := s.bounded(ctx, s.sequenced); err != nil {
		return nil, err
	}
	q := claimDue
	if !ordered {
		var walk bool
		if err := s.pool.QueryRow(ctx, dueInWalk, at, n).Scan(&walk); err != nil {
			return nil, s.dbErr(err)
		}
		if !walk {
			q = claimDueByTime
		}
	}
	var claims []store.ForwardClaim
	collect := func(rows pgx.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		claims = nil
		for rows.Next() {
			var c store.ForwardClaim
			j, _, err := scanJob(rows, &c.Token)
			if err != nil {
				return err
			}
			c.Job, c.Attempt = j, j.Forward.Attempts+1
			claims = append(claims, c)
		}
		return rows.Err()
	}
	var err error
	if !ordered {
		// One statement, which chooses and leases at once.
		err = s.bounded(ctx, func(ctx context.Context) error { return collect(s.pool.Query(ctx, q, until, at, n)) })
	} else {
		err = s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			claims = nil
			row, ok, err := headDue(ctx, tx, at)
			if err != nil || !ok {
				return err
			}
			return collect(tx.Query(ctx, claimOne, until, row))
		})
	}
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// headDue locks the pending forward with the lowest seq and returns its
// job row if it is due at at and no lease holds it, and forwarding is not
// paused.
func headDue(ctx context.Context, tx pgx.Tx, at int64) (row int64, ok bool, err error) {
	var next, leased *int64
	var paused bool
	err = tx.QueryRow(ctx, `SELECT job_row, next_attempt_at, lease_until, NOT `+notPaused+`
		FROM forwards WHERE state = 'pending' AND seq IS NOT NULL ORDER BY seq LIMIT 1 FOR UPDATE OF forwards`).
		Scan(&row, &next, &leased, &paused)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	due := !paused && next != nil && *next <= at && (leased == nil || *leased <= at)
	return row, due, nil
}

// FinishForward records an attempt's result under the claim's token (see
// store.Forwards): one statement updates the forward if the token is still
// its latest and its lease was not already ended by a result (so a claim
// is finished once), appends the attempt and, for a 410, pauses
// forwarding.
func (s *Store) FinishForward(ctx context.Context, c store.ForwardClaim, r store.ForwardResult) (bool, error) {
	if !r.State.Known() {
		return false, store.Errorf(store.EINVALID, "unknown forward state %q", r.State)
	}
	var next *int64
	if r.State == store.ForwardPending {
		n := clampNanos(r.Next)
		next = &n
	}
	lastErr := r.Err
	if r.State == store.ForwardDelivered {
		lastErr = ""
	}
	var done int
	err := s.bounded(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `WITH f AS (
				UPDATE forwards SET attempts = attempts + 1, last_status = $3, last_error = $4, lease_until = NULL,
					state = $5::text, next_attempt_at = $6,
					delivered_at = CASE WHEN $5::text = 'delivered' THEN $7 ELSE delivered_at END
				WHERE job_row = (SELECT id FROM jobs WHERE job_id = $1) AND claims = $2 AND state = 'pending'
					AND lease_until IS NOT NULL
				RETURNING job_row),
			a AS (INSERT INTO forward_attempts (job_row, attempt, at, took_ms, status, error, state)
				SELECT job_row, $8, $7, $9, $3, $10, $5::text FROM f),
			p AS (UPDATE forward_pause SET reason = $10 WHERE $5::text = 'paused' AND EXISTS (SELECT 1 FROM f))
			SELECT count(*) FROM f`,
			c.Job.JobID, c.Token, r.Status, lastErr, string(r.State), next, clampNanos(r.At), c.Attempt,
			r.Took.Milliseconds(), r.Err).Scan(&done)
	})
	if err != nil {
		return false, err
	}
	return done == 1, nil
}

// NextForwardAt is when the soonest pending forward is due: its next
// attempt, or its lease's end when later. The unleased ones are read
// through forwards_next and the few leased ones through forwards_leased, so
// it costs two index probes however long the queue.
func (s *Store) NextForwardAt(ctx context.Context) (time.Time, bool, error) {
	var n *int64
	err := s.pool.QueryRow(ctx, `SELECT CASE WHEN `+notPaused+` THEN LEAST(
		(SELECT MIN(next_attempt_at) FROM forwards WHERE state = 'pending' AND lease_until IS NULL),
		(SELECT MIN(GREATEST(next_attempt_at, lease_until)) FROM forwards
			WHERE lease_until IS NOT NULL AND state = 'pending')) END`).Scan(&n)
	if err != nil || n == nil {
		return time.Time{}, false, s.dbErr(err)
	}
	return fromNanos(*n), true, nil
}

// forwardOrder is the queue's order of states, as ListForwards pages it.
var forwardOrder = []store.ForwardState{store.ForwardFailed, store.ForwardPaused, store.ForwardPending,
	store.ForwardDelivered}

// ListForwards returns a page of the queue (see store.Forwards), reading
// one state at a time in seq order, all in one snapshot. The cursor is the
// last forward's place: its state's rank in forwardOrder and its seq.
func (s *Store) ListForwards(ctx context.Context, f store.ForwardFilter) ([]store.QueuedForward, string, error) {
	if f.Limit < 1 || f.Limit > store.MaxLimit {
		return nil, "", store.Errorf(store.EINVALID, "limit must be between 1 and %d", store.MaxLimit)
	}
	for _, st := range f.States {
		if !st.Known() {
			return nil, "", store.Errorf(store.EINVALID, "unknown forward state %q", st)
		}
	}
	if err := s.bounded(ctx, s.sequenced); err != nil { // the queue is paged by seq
		return nil, "", err
	}
	rank, after := 0, int64(-1)
	if f.Cursor != "" {
		r, seq, ok := strings.Cut(f.Cursor, ".")
		var err1, err2 error
		rank, err1 = strconv.Atoi(r)
		after, err2 = strconv.ParseInt(seq, 10, 64)
		if !ok || err1 != nil || err2 != nil || rank < 0 || rank >= len(forwardOrder) || after < 0 {
			return nil, "", store.Errorf(store.EINVALID, "cursor %q is not one this API returned", f.Cursor)
		}
	}
	out := []store.QueuedForward{}
	next := ""
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		for ; rank < len(forwardOrder) && len(out) <= f.Limit; rank, after = rank+1, -1 {
			st := forwardOrder[rank]
			if len(f.States) > 0 && !slices.Contains(f.States, st) {
				continue
			}
			rows, err := tx.Query(ctx, `SELECT jobs.job_id, fw.seq, fw.enqueued_at, `+forwardColumns+`
				FROM forwards fw JOIN jobs ON jobs.id = fw.job_row
				WHERE fw.state = $1 AND fw.seq > $2 ORDER BY fw.seq LIMIT $3`, string(st), after, f.Limit+1-len(out))
			if err != nil {
				return err
			}
			var q store.QueuedForward
			var enqueued int64
			var fw nullForward
			_, err = pgx.ForEachRow(rows, []any{&q.JobID, &q.Seq, &enqueued, &fw.state, &fw.attempts,
				&fw.lastStatus, &fw.lastError, &fw.next, &fw.delivered}, func() error {
				q.Forward, q.EnqueuedAt = *fw.forward(), fromNanos(enqueued)
				out = append(out, q)
				if len(out) == f.Limit {
					next = strconv.Itoa(rank) + "." + strconv.FormatInt(q.Seq, 10)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) <= f.Limit {
		next = ""
	} else {
		out = out[:f.Limit]
	}
	return out, next, nil
}

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	return s.dbErr(err)
}

// jobRow returns the row id of the job, or store.ErrNotFound.
func jobRow(ctx context.Context, q querier, jobID string) (int64, error) {
	var row int64
	err := q.QueryRow(ctx, `SELECT id FROM jobs WHERE job_id = $1`, jobID).Scan(&row)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.Errorf(store.ENOTFOUND, "job not found: %s", jobID)
	}
	return row, err
}

// ForwardAttempts returns the job's last store.MaxDeliveries recorded
// attempts, oldest first; store.ErrNotFound for an unknown job.
func (s *Store) ForwardAttempts(ctx context.Context, jobID string) ([]store.ForwardAttempt, error) {
	return lastOfJob(ctx, s, jobID, `SELECT attempt, at, took_ms, status, error, state FROM forward_attempts
		WHERE job_row = $1 ORDER BY id DESC LIMIT $2`, func(row pgx.CollectableRow) (store.ForwardAttempt, error) {
		var a store.ForwardAttempt
		var at int64
		err := row.Scan(&a.Attempt, &at, &a.TookMs, &a.Status, &a.Error, &a.State)
		a.At = fromNanos(at)
		return a, err
	})
}

// lastOfJob returns, oldest first, the rows of a job's timeline that query
// reads newest first ($1: the job's row, $2: store.MaxDeliveries), read in
// the same snapshot as the job; store.ErrNotFound for an unknown job.
func lastOfJob[T any](ctx context.Context, s *Store, jobID, query string, scan pgx.RowToFunc[T]) ([]T, error) {
	var out []T
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		row, err := jobRow(ctx, tx, jobID)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, query, row, store.MaxDeliveries)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scan)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// requeue queues again, due at $1 with attempts reset, the forward of each
// job the query chosen returns (id, seq), creating those missing; a forward
// in flight has its token moved, so its result will be refused.
func requeue(chosen string) string {
	return `INSERT INTO forwards (job_row, seq, state, next_attempt_at, enqueued_at)
		SELECT id, seq, 'pending', $1, $1 FROM (` + chosen + `) AS c
		ON CONFLICT (job_row) DO UPDATE SET state = 'pending', attempts = 0, last_status = 0, last_error = '',
			next_attempt_at = excluded.next_attempt_at, enqueued_at = excluded.enqueued_at, lease_until = NULL,
			claims = forwards.claims + 1`
}

// resume ends the pause: paused forwards become pending, due at $1.
func resume(ctx context.Context, tx pgx.Tx, at int64) error {
	if _, err := tx.Exec(ctx, `UPDATE forward_pause SET reason = NULL WHERE reason IS NOT NULL`); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE forwards SET state = 'pending', next_attempt_at = $1 WHERE state = 'paused'`, at)
	return err
}

// RetryForwards queues again the forward of each named job, all or none,
// and ends any pause (see store.Forwards).
func (s *Store) RetryForwards(ctx context.Context, now time.Time, jobIDs []string) (int, error) {
	ids := slices.Compact(slices.Sorted(slices.Values(jobIDs)))
	at := clampNanos(now)
	if err := s.bounded(ctx, s.sequenced); err != nil { // a forward is queued with its job's seq
		return 0, err
	}
	var n int
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT job_id, terminal FROM jobs WHERE job_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		ended := map[string]bool{}
		var id string
		var terminal bool
		if _, err := pgx.ForEachRow(rows, []any{&id, &terminal}, func() error {
			ended[id] = terminal
			return nil
		}); err != nil {
			return err
		}
		for _, id := range jobIDs {
			terminal, known := ended[id]
			switch {
			case !known:
				return store.Errorf(store.ENOTFOUND, "job not found: %s", id)
			case !terminal:
				return store.Errorf(store.EINVALID, "job %s has not ended, so it has no forward to retry", id)
			}
		}
		tag, err := tx.Exec(ctx, requeue(`SELECT jobs.id, feed.seq FROM `+numberedJobs+` AND jobs.job_id = ANY($2)`), at, ids)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return resume(ctx, tx, at)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// replayChunk bounds the jobs one statement of a replay queues, so that a
// replay of a long log is a series of short writes, each within
// writeTimeout, rather than one that holds thousands of rows locked.
const replayChunk = 5000

// ReplayForwards queues again the forward of every job with seq > after
// (see store.Forwards), replayChunk jobs per statement, in seq order. A job
// that ends meanwhile is queued by its end, or by the replay, or both.
func (s *Store) ReplayForwards(ctx context.Context, now time.Time, after int64) (int, error) {
	if after < 0 {
		return 0, store.Errorf(store.EINVALID, "after must be 0 or more")
	}
	if err := s.bounded(ctx, s.sequenced); err != nil {
		return 0, err
	}
	q := `WITH c AS (SELECT job_row AS id, seq FROM feed WHERE seq > $2 ORDER BY seq LIMIT $3), q AS (` +
		requeue(`SELECT id, seq FROM c`) + `) SELECT count(*), COALESCE(max(seq), 0) FROM c`
	total := 0
	for {
		var n int
		var last int64
		err := s.bounded(ctx, func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, q, clampNanos(now), after, replayChunk).Scan(&n, &last)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < replayChunk {
			return total, nil
		}
		after = last
	}
}

// ResumeForwarding ends a pause: paused forwards become pending, due at
// now.
func (s *Store) ResumeForwarding(ctx context.Context, now time.Time) error {
	return s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error { return resume(ctx, tx, clampNanos(now)) })
}

// ForwardStats counts the queue's forwards by state, in one query with the
// pause.
func (s *Store) ForwardStats(ctx context.Context) (store.ForwardStats, error) {
	st := store.ForwardStats{ByState: map[store.ForwardState]int{}}
	for _, state := range forwardOrder {
		st.ByState[state] = 0
	}
	rows, err := s.pool.Query(ctx, `SELECT state, count(*), NULL::bigint, NULL::text FROM forwards GROUP BY state
		UNION ALL SELECT '', 0, (SELECT min(enqueued_at) FROM forwards WHERE state IN ('pending', 'paused')), reason
		FROM forward_pause`)
	if err != nil {
		return store.ForwardStats{}, s.dbErr(err)
	}
	var state string
	var n int64
	var oldest *int64
	var reason *string
	_, err = pgx.ForEachRow(rows, []any{&state, &n, &oldest, &reason}, func() error {
		fs := store.ForwardState(state)
		switch {
		case state == "":
			if reason != nil {
				st.Paused, st.PauseReason = true, *reason
			}
			if oldest != nil {
				t := fromNanos(*oldest)
				st.OldestPending = &t
			}
		case fs == store.ForwardPending || fs == store.ForwardPaused:
			st.Depth += int(n)
			fallthrough
		default:
			st.ByState[fs] = int(n)
		}
		return nil
	})
	if err != nil {
		return store.ForwardStats{}, s.dbErr(err)
	}
	return st, nil
}

// JobPolls returns the job's last store.MaxDeliveries polls, oldest first;
// store.ErrNotFound for an unknown job.
func (s *Store) JobPolls(ctx context.Context, jobID string) ([]store.PollRecord, error) {
	return lastOfJob(ctx, s, jobID, `SELECT at, status, error, ended FROM polls
		WHERE job_row = $1 ORDER BY id DESC LIMIT $2`, func(row pgx.CollectableRow) (store.PollRecord, error) {
		var p store.PollRecord
		var at int64
		err := row.Scan(&at, &p.Status, &p.Error, &p.Ended)
		p.At = fromNanos(at)
		return p, err
	})
}

// DeliveryBody returns the exact bytes of the job's delivery with the given
// id; store.ErrNotFound when the job has no such one.
func (s *Store) DeliveryBody(ctx context.Context, jobID string, id int64) ([]byte, error) {
	var body []byte
	err := s.pool.QueryRow(ctx, `SELECT d.body FROM deliveries d JOIN jobs ON jobs.id = d.job_row
		WHERE jobs.job_id = $1 AND d.id = $2`, jobID, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.Errorf(store.ENOTFOUND, "job %s has no delivery %d", jobID, id)
	}
	if err != nil {
		return nil, s.dbErr(err)
	}
	return body, nil
}
