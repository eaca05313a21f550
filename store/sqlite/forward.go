package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// The forwarding queue is the forwards table: one row per job, queued by the
// transaction that ends the job when forwarding is on, and by a retry or a
// replay. Every change to it goes through the writer, so a claim and the
// result of an attempt are serialized with each other and with the job's
// end; one process at a time has the file, so leases only guard against a
// forwarder of this process that gave up on an attempt, and Open clears
// them all.

// forwardCounter names the counter of forwards in state st.
func forwardCounter(st store.ForwardState) string { return "forward:" + string(st) }

// pauseKey is the meta row that holds the pause's reason while forwarding
// is paused.
const pauseKey = "forward_pause"

// forwardColumns are a job's forward as jobColumns read it: all NULL when
// the job has none.
type forwardColumns struct {
	state, lastError     sql.NullString
	attempts, lastStatus sql.NullInt64
	next, delivered      sql.NullInt64
}

func (c forwardColumns) forward() *store.Forward {
	if !c.state.Valid {
		return nil
	}
	f := &store.Forward{State: store.ForwardState(c.state.String), Attempts: int(c.attempts.Int64),
		LastStatus: int(c.lastStatus.Int64), LastError: c.lastError.String}
	if f.State == store.ForwardPending && c.next.Valid {
		t := fromNanos(c.next.Int64)
		f.NextAttemptAt = &t
	}
	if c.delivered.Valid {
		t := fromNanos(c.delivered.Int64)
		f.DeliveredAt = &t
	}
	return f
}

// enqueueForward queues the forward of the job at row, which has just
// ended with seq at now, when forwarding is on. The row is written with
// the others of the transaction by flushForwards, in one statement, rather
// than one statement per end: a webhook's transaction is the hot path, and
// the statement's own cost was most of what queueing cost it.
func (t *txn) enqueueForward(row, seq, now int64) error {
	if !t.forward {
		return nil
	}
	t.enqueued = append(t.enqueued, enqueued{row: row, seq: seq, at: now})
	return nil
}

// enqueued is a forward enqueueForward queued, not yet written.
type enqueued struct{ row, seq, at int64 }

// flushForwards writes the forwards queued so far in this transaction, in
// the order their jobs ended. It runs before the counters are written, and
// before any op reads or changes the forwards table (the claim, a result,
// a retry, a replay, a resume, a prune), so that within the transaction
// those see the forwards of the jobs that ended before them. A job ends
// once, so each row is new; were it not, the forward already queued
// stands.
func (t *txn) flushForwards() error {
	if len(t.enqueued) == 0 {
		return nil
	}
	var args []any
	var queued int64
	for i, size := range enqueueChunks {
		for len(t.enqueued) >= size {
			args = args[:0]
			for _, e := range t.enqueued[:size] {
				args = append(args, e.row, e.seq, e.at)
			}
			res, err := t.stmt(t.stmts.enqueueForward[i]).ExecContext(t.ctx, args...)
			if err != nil {
				return fmt.Errorf("queue forwards: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			queued += n
			t.enqueued = t.enqueued[size:]
		}
	}
	t.count(forwardCounter(store.ForwardPending), queued)
	return nil
}

// requeueForward is the upsert of a retry and a replay: the forward is
// pending, due at ?, with its attempts reset, and its claims moved on so
// that an attempt in flight can no longer record its result. delivered_at
// is kept: the app did answer 2xx then.
const requeueForward = `INSERT INTO forwards (job_row, seq, state, attempts, last_status, last_error,
		next_attempt_at, enqueued_at, lease_until, claims)
	%s
	ON CONFLICT (job_row) DO UPDATE SET state = 'pending', attempts = 0, last_status = 0, last_error = '',
		next_attempt_at = excluded.next_attempt_at, enqueued_at = excluded.enqueued_at, lease_until = NULL,
		claims = forwards.claims + 1`

// pauseReason returns the pause's reason; paused is false when forwarding
// is not paused.
func pauseReason(ctx context.Context, q rowQuerier) (reason string, paused bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, pauseKey).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return reason, err == nil, err
}

// resume ends the pause: paused forwards become pending, due at now.
func (t *txn) resume(now time.Time) error {
	if err := t.flushForwards(); err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM meta WHERE key = ?`, pauseKey); err != nil {
		return err
	}
	res, err := t.tx.ExecContext(t.ctx, `UPDATE forwards SET state = 'pending', next_attempt_at = ?
		WHERE state = 'paused'`, now.UnixNano())
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	t.count(forwardCounter(store.ForwardPaused), -n)
	t.count(forwardCounter(store.ForwardPending), n)
	return err
}

// ClaimForwards leases up to n pending forwards due at now, the lowest seq
// first (see store.Forwards). n below 1 or a lease that is not positive is
// ErrInvalid.
func (s *Store) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	if n < 1 {
		return nil, store.Errorf(store.EINVALID, "claim count %d: must be 1 or more", n)
	}
	if lease <= 0 {
		return nil, store.Errorf(store.EINVALID, "lease %s: must be positive", lease)
	}
	if ordered {
		n = 1
	}
	at, until := clampNanos(now), clampNanos(now.Add(lease))
	var claims []store.ForwardClaim
	err := s.write(ctx, func(t *txn) error {
		claims = nil
		if err := t.flushForwards(); err != nil {
			return err
		}
		var reason string
		if err := t.stmt(t.stmts.pauseReason).QueryRowContext(t.ctx).Scan(&reason); err == nil {
			return nil // paused
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		rows, err := t.dueForwards(at, n, ordered)
		if err != nil {
			return err
		}
		for _, row := range rows {
			c := store.ForwardClaim{}
			err := t.stmt(t.stmts.claimForward).QueryRowContext(t.ctx, until, row).Scan(&c.Token, &c.Attempt)
			if err != nil {
				return fmt.Errorf("claim forward: %w", err)
			}
			if c.Job, _, err = scanJob(t.stmt(t.stmts.claimedJob).QueryRowContext(t.ctx, row)); err != nil {
				return fmt.Errorf("read claimed job: %w", err)
			}
			claims = append(claims, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// claimWalk is how many pending forwards a claim looks at in seq order
// before it looks for the due ones through forwards_next instead, and
// claimScan how many of those, the longest overdue, it picks from.
const (
	claimWalk = 64
	claimScan = 1024
)

// dueForwards returns the rows of up to n forwards due at at, lowest seq
// first. ordered looks only at the pending forward with the lowest seq,
// which holds all after it while leased or not yet due.
//
// A claim first walks the pending forwards in seq order: in a backlog that
// is due, the first n are the answer. When the lowest seqs are waiting out
// a retry (the app is down, say), that walk would cross every one of them
// on each claim, so after claimWalk it reads the due ones instead, through
// forwards_next and forwards_leased, and keeps the n lowest seqs. So that a
// claim holds the writer for a bounded time however many are due, it reads
// at most the claimScan longest overdue: with more due than that, it takes
// the lowest seqs of those, and none waits for ever.
func (t *txn) dueForwards(at int64, n int, ordered bool) ([]int64, error) {
	limit := max(claimWalk, n)
	if ordered {
		limit = 1
	}
	rows, err := t.stmt(t.stmts.dueForwards).QueryContext(t.ctx, limit)
	if err != nil {
		return nil, err
	}
	var due []int64
	walked := 0
	for rows.Next() {
		var row, next int64
		var lease sql.NullInt64
		if err := rows.Scan(&row, &next, &lease); err != nil {
			rows.Close()
			return nil, err
		}
		walked++
		if next <= at && (!lease.Valid || lease.Int64 <= at) {
			if due = append(due, row); len(due) == n {
				break // in a backlog that is due, the first n: the walk stops there
			}
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	if ordered || len(due) == n || walked < limit {
		return due, nil
	}
	rows, err = t.tx.QueryContext(t.ctx, `SELECT job_row FROM (
			SELECT * FROM (SELECT job_row, seq FROM forwards INDEXED BY forwards_next
				WHERE state = 'pending' AND lease_until IS NULL AND next_attempt_at <= ?
				ORDER BY next_attempt_at LIMIT ?)
			UNION ALL
			SELECT job_row, seq FROM forwards INDEXED BY forwards_leased
				WHERE lease_until IS NOT NULL AND lease_until <= ? AND state = 'pending' AND next_attempt_at <= ?)
		ORDER BY seq LIMIT ?`, at, claimScan, at, at, n)
	if err != nil {
		return nil, err
	}
	due = due[:0]
	for rows.Next() {
		var row int64
		if err := rows.Scan(&row); err != nil {
			rows.Close()
			return nil, err
		}
		due = append(due, row)
	}
	return due, errors.Join(rows.Err(), rows.Close())
}

// FinishForward records an attempt's result under the claim's token (see
// store.Forwards). A result in no known state is ErrInvalid.
func (s *Store) FinishForward(ctx context.Context, c store.ForwardClaim, r store.ForwardResult) (bool, error) {
	if !r.State.Known() {
		return false, store.Errorf(store.EINVALID, "forward result state %q is not one of pending, delivered, failed, paused", r.State)
	}
	var next, delivered any
	lastError := r.Err
	switch r.State {
	case store.ForwardPending:
		next = clampNanos(r.Next)
	case store.ForwardDelivered:
		delivered, lastError = clampNanos(r.At), ""
	}
	var ok bool
	err := s.write(ctx, func(t *txn) error {
		ok = false
		if err := t.flushForwards(); err != nil {
			return err
		}
		var row int64
		err := t.stmt(t.stmts.finishForward).QueryRowContext(t.ctx, r.Status, lastError, r.State, next, delivered,
			c.Job.JobID, c.Token).Scan(&row)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // a stale token: another claim, a retry or a replay came since
		}
		if err != nil {
			return err
		}
		if _, err := t.stmt(t.stmts.insertAttempt).ExecContext(t.ctx,
			row, c.Attempt, clampNanos(r.At), r.Took.Milliseconds(), r.Status, r.Err, r.State); err != nil {
			return err
		}
		t.count(forwardCounter(store.ForwardPending), -1)
		t.count(forwardCounter(r.State), 1)
		if r.State == store.ForwardPaused {
			if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, pauseKey, r.Err); err != nil {
				return err
			}
		}
		ok = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// NextForwardAt is when the soonest pending forward is due (see
// store.Forwards). The unleased forwards are read through forwards_next and
// the few leased ones through forwards_leased, so it costs two index probes
// however long the queue.
func (s *Store) NextForwardAt(ctx context.Context) (time.Time, bool, error) {
	var paused bool
	var next sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM meta WHERE key = ?),
		(SELECT MIN(t) FROM (
			SELECT MIN(next_attempt_at) AS t FROM forwards INDEXED BY forwards_next
				WHERE state = 'pending' AND lease_until IS NULL
			UNION ALL
			SELECT MIN(MAX(next_attempt_at, lease_until)) FROM forwards INDEXED BY forwards_leased
				WHERE lease_until IS NOT NULL AND state = 'pending'))`, pauseKey).Scan(&paused, &next)
	if err != nil || paused || !next.Valid {
		return time.Time{}, false, err
	}
	return fromNanos(next.Int64), true, nil
}

// forwardOrder is the queue's order of states: what needs a person first.
var forwardOrder = []store.ForwardState{store.ForwardFailed, store.ForwardPaused, store.ForwardPending, store.ForwardDelivered}

// ListForwards returns a page of the queue (see store.Forwards). Each state
// is one walk of forwards_state from the cursor; the cursor is the rank of
// the last forward's state in forwardOrder and its seq.
func (s *Store) ListForwards(ctx context.Context, f store.ForwardFilter) ([]store.QueuedForward, string, error) {
	if f.Limit < 1 || f.Limit > store.MaxLimit {
		return nil, "", store.Errorf(store.EINVALID, "limit must be between 1 and %d", store.MaxLimit)
	}
	want := map[store.ForwardState]bool{}
	for _, st := range f.States {
		if !st.Known() {
			return nil, "", store.Errorf(store.EINVALID, "unknown forward state %q", st)
		}
		want[st] = true
	}
	rank, after := 0, int64(0)
	if f.Cursor != "" {
		r, seq, ok := strings.Cut(f.Cursor, ".")
		var err1, err2 error
		rank, err1 = strconv.Atoi(r)
		after, err2 = strconv.ParseInt(seq, 10, 64)
		if !ok || err1 != nil || err2 != nil || rank < 0 || rank >= len(forwardOrder) || after < 0 {
			return nil, "", store.Errorf(store.EINVALID, "cursor %q is not one this API returned", f.Cursor)
		}
	}
	tx, err := s.rdb.BeginTx(ctx, nil) // one snapshot for every state's walk
	if err != nil {
		return nil, "", err
	}
	defer tx.Rollback()
	out := []store.QueuedForward{}
	var ranks []int
	for ; rank < len(forwardOrder) && len(out) <= f.Limit; rank, after = rank+1, 0 {
		st := forwardOrder[rank]
		if len(want) > 0 && !want[st] {
			continue
		}
		page, err := listState(ctx, tx, st, after, f.Limit+1-len(out))
		if err != nil {
			return nil, "", err
		}
		out = append(out, page...)
		for range page {
			ranks = append(ranks, rank)
		}
	}
	if len(out) <= f.Limit {
		return out, "", nil
	}
	last := f.Limit - 1
	return out[:f.Limit], strconv.Itoa(ranks[last]) + "." + strconv.FormatInt(out[last].Seq, 10), nil
}

// listState reads up to n forwards in state st with seq > after, lowest seq
// first.
func listState(ctx context.Context, tx *sql.Tx, st store.ForwardState, after int64, n int) ([]store.QueuedForward, error) {
	rows, err := tx.QueryContext(ctx, `SELECT jobs.job_id, f.seq, f.state, f.attempts, f.last_status,
		f.last_error, f.next_attempt_at, f.delivered_at, f.enqueued_at
		FROM forwards f INDEXED BY forwards_state JOIN jobs ON jobs.id = f.job_row
		WHERE f.state = ? AND f.seq > ? ORDER BY f.seq LIMIT ?`, st, after, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.QueuedForward
	for rows.Next() {
		var q store.QueuedForward
		var c forwardColumns
		var enqueued int64
		if err := rows.Scan(&q.JobID, &q.Seq, &c.state, &c.attempts, &c.lastStatus, &c.lastError, &c.next,
			&c.delivered, &enqueued); err != nil {
			return nil, err
		}
		q.Forward, q.EnqueuedAt = *c.forward(), fromNanos(enqueued)
		out = append(out, q)
	}
	return out, rows.Err()
}

// ForwardAttempts returns the job's last MaxDeliveries recorded attempts,
// oldest first, or ErrNotFound for an unknown job.
func (s *Store) ForwardAttempts(ctx context.Context, jobID string) ([]store.ForwardAttempt, error) {
	return lastOfJob(ctx, s, jobID, `SELECT attempt, at, took_ms, status, error, state FROM forward_attempts`,
		func(rows *sql.Rows) (store.ForwardAttempt, error) {
			var a store.ForwardAttempt
			var at int64
			err := rows.Scan(&a.Attempt, &at, &a.TookMs, &a.Status, &a.Error, &a.State)
			a.At = fromNanos(at)
			return a, err
		})
}

// RetryForwards queues again the forward of each named job (see
// store.Forwards), and resumes forwarding. The jobs are checked in the
// transaction that queues them, so none is queued unless all can be.
func (s *Store) RetryForwards(ctx context.Context, now time.Time, jobIDs []string) (int, error) {
	ids := slices.Clone(jobIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	at := clampNanos(now)
	var queued int
	var refused error
	err := s.write(ctx, func(t *txn) error {
		queued, refused = 0, nil
		if err := t.flushForwards(); err != nil {
			return err
		}
		type target struct {
			row, seq int64
			was      sql.NullString // the forward's state, NULL when it has none
		}
		targets := make([]target, 0, len(ids))
		for _, id := range ids {
			var tg target
			var seq sql.NullInt64
			err := t.tx.QueryRowContext(t.ctx, `SELECT jobs.id, jobs.seq, f.state
				FROM jobs LEFT JOIN forwards f ON f.job_row = jobs.id WHERE jobs.job_id = ?`, id).
				Scan(&tg.row, &seq, &tg.was)
			if errors.Is(err, sql.ErrNoRows) {
				refused = store.Errorf(store.ENOTFOUND, "job not found: %s", id)
				return nil
			}
			if err != nil {
				return err
			}
			if !seq.Valid {
				refused = store.Errorf(store.EINVALID, "job %s has not ended; only an ended job is forwarded", id)
				return nil
			}
			tg.seq = seq.Int64
			targets = append(targets, tg)
		}
		for _, tg := range targets {
			if _, err := t.tx.ExecContext(t.ctx, fmt.Sprintf(requeueForward, `VALUES (?, ?, 'pending', 0, 0, '', ?, ?, NULL, 1)`),
				tg.row, tg.seq, at, at); err != nil {
				return err
			}
			if tg.was.Valid {
				t.count(forwardCounter(store.ForwardState(tg.was.String)), -1)
			}
			t.count(forwardCounter(store.ForwardPending), 1)
		}
		if err := t.resume(now); err != nil {
			return err
		}
		queued = len(targets)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if refused != nil {
		return 0, refused
	}
	return queued, nil
}

// replayChunk bounds the jobs one write of a replay queues, so that a replay
// of a long log holds the writer, and the webhooks queued behind it, for
// short turns.
const replayChunk = 1000

// ReplayForwards queues again the forward of every job with seq > after
// (see store.Forwards), replayChunk jobs per write, in seq order. A job that
// ends meanwhile is queued by its end, or by the replay, or both.
func (s *Store) ReplayForwards(ctx context.Context, now time.Time, after int64) (int, error) {
	if after < 0 {
		return 0, store.Errorf(store.EINVALID, "after must be 0 or more")
	}
	at := clampNanos(now)
	total := 0
	for {
		var n int
		var last sql.NullInt64
		err := s.write(ctx, func(t *txn) error {
			n, last = 0, sql.NullInt64{}
			if err := t.flushForwards(); err != nil {
				return err
			}
			err := t.tx.QueryRowContext(t.ctx, `SELECT COUNT(*), MAX(seq) FROM
				(SELECT seq FROM jobs WHERE seq > ? ORDER BY seq LIMIT ?)`, after, replayChunk).Scan(&n, &last)
			if err != nil || n == 0 {
				return err
			}
			if err := t.uncountForwards(`SELECT f.state FROM jobs JOIN forwards f ON f.job_row = jobs.id
				WHERE jobs.seq > ? AND jobs.seq <= ?`, after, last.Int64); err != nil {
				return err
			}
			t.count(forwardCounter(store.ForwardPending), int64(n))
			_, err = t.tx.ExecContext(t.ctx, fmt.Sprintf(requeueForward,
				`SELECT id, seq, 'pending', 0, 0, '', ?, ?, NULL, 1 FROM jobs WHERE seq > ? AND seq <= ?`),
				at, at, after, last.Int64)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < replayChunk {
			return total, nil
		}
		after = last.Int64
	}
}

// uncountForwards takes the forwards query selects (their state) out of
// the counters: they are about to change state or go.
func (t *txn) uncountForwards(query string, args ...any) error {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var st store.ForwardState
		if err := rows.Scan(&st); err != nil {
			rows.Close()
			return err
		}
		t.count(forwardCounter(st), -1)
	}
	return errors.Join(rows.Err(), rows.Close())
}

// ResumeForwarding ends a pause (see store.Forwards).
func (s *Store) ResumeForwarding(ctx context.Context, now time.Time) error {
	return s.write(ctx, func(t *txn) error { return t.resume(now) })
}

// ForwardStats returns the queue's counts and the pause, as of one
// snapshot. The counts are counters the writes keep (forward:<state>), the
// oldest waiting forward one probe of forwards_waiting, so it
// costs the same however long the queue.
func (s *Store) ForwardStats(ctx context.Context) (store.ForwardStats, error) {
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return store.ForwardStats{}, err
	}
	defer tx.Rollback()
	st := store.ForwardStats{ByState: map[store.ForwardState]int{}}
	for _, state := range forwardOrder {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT n FROM counters WHERE name = ?), 0)`,
			forwardCounter(state)).Scan(&n); err != nil {
			return store.ForwardStats{}, err
		}
		st.ByState[state] = n
	}
	st.Depth = st.ByState[store.ForwardPending] + st.ByState[store.ForwardPaused]
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(enqueued_at) FROM forwards INDEXED BY forwards_waiting
		WHERE state IN ('pending', 'paused')`).Scan(&oldest); err != nil {
		return store.ForwardStats{}, err
	}
	if oldest.Valid {
		t := fromNanos(oldest.Int64)
		st.OldestPending = &t
	}
	if st.PauseReason, st.Paused, err = pauseReason(ctx, tx); err != nil {
		return store.ForwardStats{}, err
	}
	return st, nil
}

// enqueueChunks are the row counts of the prepared inserts flushForwards
// writes with (statements.enqueueForward, in this order), the largest
// first.
var enqueueChunks = [len(statements{}.enqueueForward)]int{64, 16, 4, 1}

// enqueueForwards is the insert of n forwards, each bound as its job row,
// seq and queued-at time.
func enqueueForwards(n int) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = fmt.Sprintf("(?%d, ?%d, 'pending', ?%d, ?%d)", 3*i+1, 3*i+2, 3*i+3, 3*i+3)
	}
	return `INSERT INTO forwards (job_row, seq, state, next_attempt_at, enqueued_at) VALUES ` +
		strings.Join(rows, ", ") + ` ON CONFLICT (job_row) DO NOTHING`
}
