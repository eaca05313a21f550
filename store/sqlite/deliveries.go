package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"

	"github.com/nouvelhook/nouvelhook/store"
)

// RecordWebhook commits a verified delivery: its raw bytes in the delivery
// log and, for a usable event, the job's terminal state and feed entry, all in
// one transaction. It returns only once that is durable. An error wrapping
// ErrUnavailable means nothing was stored.
func (s *Store) RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	hash := sha256.Sum256(d.Body) // outside the writer, which is the bottleneck
	if d.Report == nil {
		return store.OutcomeInvalid, s.write(ctx, func(t *txn) error {
			return t.insertDelivery(d, hash[:], 0, store.OutcomeInvalid)
		})
	}
	if err := d.Report.CheckEnd(); err != nil {
		return "", err
	}
	projects, err := store.EncodeProjects(d.Report.Projects)
	if err != nil {
		return "", err
	}
	var outcome store.Outcome
	err = s.write(ctx, func(t *txn) error {
		var row int64
		var err error
		if outcome, row, err = t.endJob(d.Report, projects, store.SourceWebhook); err != nil {
			return err
		}
		return t.insertDelivery(d, hash[:], row, outcome)
	})
	return outcome, err
}

// jobState is what deciding the fate of a report needs to know of its job.
type jobState struct {
	row                      int64
	status                   store.Status
	terminal                 bool
	total, completed, failed int
}

func (j jobState) agrees(r *store.Report) bool {
	return j.status == r.Status && j.total == r.TotalProjects &&
		j.completed == r.CompletedProjects && j.failed == r.FailedProjects
}

// endJob applies a terminal report learned from source and returns what it
// did and the job's row. The first terminal report wins; a later one only
// bumps the webhook counter. A job not yet in the log, the common case for a
// webhook, takes a single insert.
func (t *txn) endJob(r *store.Report, projects, source string) (store.Outcome, int64, error) {
	webhooks := 0
	if source == store.SourceWebhook {
		webhooks = 1
	}
	now := t.now.UnixNano()
	seq, err := t.peekSeq()
	if err != nil {
		return "", 0, err
	}
	created, err := t.createdAt()
	if err != nil {
		return "", 0, err
	}
	var cur jobState
	err = t.stmt(t.stmts.insertEnded).QueryRowContext(t.ctx, r.JobID, r.Status, r.TotalProjects,
		r.CompletedProjects, r.FailedProjects, projects, source, r.Stage, webhooks, created, now, now, seq).Scan(&cur.row)
	if err == nil {
		if err := t.enqueueForward(cur.row, seq, now); err != nil {
			return "", 0, err
		}
		t.takeSeq()
		t.count(statusCounter(r.Status), 1)
		t.count(sourceCounter(source), 1)
		t.ended = true
		return store.OutcomeAccepted, cur.row, nil
	}
	if !errors.Is(err, sql.ErrNoRows) { // no row: the job was known
		return "", 0, err
	}
	err = t.stmt(t.stmts.jobState).QueryRowContext(t.ctx, r.JobID).
		Scan(&cur.row, &cur.status, &cur.terminal, &cur.total, &cur.completed, &cur.failed)
	if err != nil {
		return "", 0, err
	}
	if !cur.terminal {
		_, err = t.stmt(t.stmts.endJob).ExecContext(t.ctx, r.Status,
			r.TotalProjects, r.CompletedProjects, r.FailedProjects, projects, source, r.Stage,
			webhooks, now, now, seq, cur.row)
		if err != nil {
			return "", 0, err
		}
		if err := t.enqueueForward(cur.row, seq, now); err != nil {
			return "", 0, err
		}
		t.takeSeq()
		t.count(statusCounter(cur.status), -1)
		t.count(statusCounter(r.Status), 1)
		t.count(sourceCounter(source), 1)
		t.ended = true
		return store.OutcomeAccepted, cur.row, nil
	}
	if webhooks > 0 {
		if _, err = t.stmt(t.stmts.countWebhook).ExecContext(t.ctx, cur.row); err != nil {
			return "", 0, err
		}
	}
	if cur.agrees(r) {
		return store.OutcomeDuplicate, cur.row, nil
	}
	return store.OutcomeConflict, cur.row, nil
}

// insertDelivery stores a delivery of the job at row (0: none), or, when
// the same bytes are already stored for that job, counts one more copy of
// them. hash is the SHA-256 of d.Body.
func (t *txn) insertDelivery(d store.WebhookDelivery, hash []byte, row int64, outcome store.Outcome) error {
	t.delivering(len(d.Body))
	var jobRow, jobID any
	var status store.Status
	stmt := t.stmts.insertUnjobbed
	if row != 0 {
		jobRow, stmt = row, t.stmts.insertDelivery
	}
	if d.Report != nil {
		jobID, status = d.Report.JobID, d.Report.Status
	} else if d.JobID != "" {
		jobID = d.JobID
	}
	received := d.ReceivedAt.UnixNano()
	_, err := t.stmt(stmt).ExecContext(t.ctx, jobRow, jobID,
		received, received, d.Attempt, status, string(outcome), d.Problem, d.Body, hash)
	if err != nil {
		return err
	}
	t.count(outcomeCounter(outcome), 1)
	return nil
}

// Counter names in the counters table.
func statusCounter(status store.Status) string { return "status:" + string(status) }
func sourceCounter(source string) string       { return "source:" + source }
func outcomeCounter(o store.Outcome) string    { return "outcome:" + string(o) }

const (
	missedCounter = "missed"
	seqCounter    = "seq"
)

// writeState is what a write transaction keeps beside the database: counter
// changes, written once at the end of the transaction rather than once per
// op, the last seq given out, and the newest job's creation time.
type writeState struct {
	deltas map[string]int64

	seqLoaded bool
	seq       int64 // last seq given out
	seqTaken  bool  // seq moved in this transaction

	createdLoaded bool
	lastCreated   int64
}

// count adds n to a counter when the transaction commits.
func (t *txn) count(name string, n int64) {
	if t.w.deltas == nil {
		t.w.deltas = map[string]int64{}
	}
	t.w.deltas[name] += n
}

// peekSeq is the seq the next job to end gets; takeSeq uses it up.
func (t *txn) peekSeq() (int64, error) {
	if !t.w.seqLoaded {
		// The counter is the truth; MAX(seq) only guards against a counter
		// that fell behind, which a correct store never has.
		if err := t.stmt(t.stmts.lastSeq).QueryRowContext(t.ctx).Scan(&t.w.seq); err != nil {
			return 0, fmt.Errorf("read seq: %w", err)
		}
		t.w.seqLoaded = true
	}
	return t.w.seq + 1, nil
}

func (t *txn) takeSeq() { t.w.seq++; t.w.seqTaken = true }

// createdAt is the created_at of a job inserted now: the clock, but never
// before the newest job's, so that created_at never decreases in id order
// and a since filter maps to an id range (see ListJobs).
func (t *txn) createdAt() (int64, error) {
	if !t.w.createdLoaded {
		var last sql.NullInt64
		err := t.stmt(t.stmts.lastCreated).QueryRowContext(t.ctx).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("read newest job: %w", err)
		}
		t.w.lastCreated, t.w.createdLoaded = last.Int64, true
	}
	t.w.lastCreated = max(t.w.lastCreated, t.now.UnixNano())
	return t.w.lastCreated, nil
}

// flushCounters writes the transaction's counter changes. The writer calls
// it once, just before COMMIT.
func (t *txn) flushCounters() error {
	if err := t.flushForwards(); err != nil { // they count
		return err
	}
	for name, n := range t.w.deltas {
		if n == 0 {
			continue
		}
		if _, err := t.stmt(t.stmts.addCounter).ExecContext(t.ctx, name, n); err != nil {
			return fmt.Errorf("count %s: %w", name, err)
		}
	}
	if t.w.seqTaken {
		if _, err := t.stmt(t.stmts.setSeq).ExecContext(t.ctx, t.w.seq); err != nil {
			return fmt.Errorf("store seq: %w", err)
		}
	}
	return nil
}

// statements are the write path's hot statements, prepared once on the
// writer's connection.
type statements struct {
	jobState, insertEnded, endJob, countWebhook, insertDelivery, insertUnjobbed,
	lastSeq, lastCreated, addCounter, setSeq,
	claimForward, claimedJob, finishForward, insertAttempt, pauseReason, dueForwards *sql.Stmt
	// enqueueForward inserts enqueueChunks[i] forwards.
	enqueueForward [4]*sql.Stmt
}

// deliveryInsert and copyOf are shared by the two delivery inserts, which
// differ only in the unique index a copy is found by.
const (
	deliveryInsert = `INSERT INTO deliveries (job_row, job_id, received_at, last_received_at, attempt, status,
		outcome, error, body, body_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	copyOf = ` DO UPDATE SET copies = copies + 1,
		last_received_at = MAX(COALESCE(last_received_at, received_at), excluded.received_at)`
)

func prepare(ctx context.Context, db *sql.DB) (*statements, error) {
	var s statements
	for _, p := range []struct {
		dst *(*sql.Stmt)
		sql string
	}{
		{&s.jobState, `SELECT id, status, terminal, total_projects, completed_projects, failed_projects
			FROM jobs WHERE job_id = ?`},
		{&s.insertEnded, `INSERT INTO jobs (job_id, status, terminal, total_projects, completed_projects,
			failed_projects, projects, source, progress, stage, webhook_deliveries, created_at, updated_at,
			terminal_at, seq) VALUES (?, ?, 1, ?, ?, ?, ?, ?, 100, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (job_id) DO NOTHING RETURNING id`},
		{&s.endJob, `UPDATE jobs SET status = ?, terminal = 1, total_projects = ?, completed_projects = ?,
			failed_projects = ?, projects = ?, source = ?, progress = 100, stage = ?,
			webhook_deliveries = webhook_deliveries + ?, updated_at = ?, terminal_at = ?,
			next_poll_at = NULL, seq = ? WHERE id = ?`},
		{&s.countWebhook, `UPDATE jobs SET webhook_deliveries = webhook_deliveries + 1 WHERE id = ?`},
		{&s.insertDelivery, deliveryInsert + ` ON CONFLICT (job_row, body_hash)` + copyOf},
		{&s.insertUnjobbed, deliveryInsert + ` ON CONFLICT (body_hash) WHERE job_row IS NULL` + copyOf},
		{&s.lastSeq, `SELECT MAX(COALESCE((SELECT n FROM counters WHERE name = 'seq'), 0),
			COALESCE((SELECT MAX(seq) FROM jobs), 0))`},
		{&s.lastCreated, `SELECT created_at FROM jobs ORDER BY id DESC LIMIT 1`},
		{&s.addCounter, `INSERT INTO counters (name, n) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET n = n + excluded.n`},
		{&s.setSeq, `INSERT INTO counters (name, n) VALUES ('seq', ?)
			ON CONFLICT (name) DO UPDATE SET n = excluded.n`},
		{&s.enqueueForward[0], enqueueForwards(enqueueChunks[0])},
		{&s.enqueueForward[1], enqueueForwards(enqueueChunks[1])},
		{&s.enqueueForward[2], enqueueForwards(enqueueChunks[2])},
		{&s.enqueueForward[3], enqueueForwards(enqueueChunks[3])},
		{&s.claimForward, `UPDATE forwards SET lease_until = ?, claims = claims + 1
				WHERE job_row = ? RETURNING claims, attempts + 1`},
		{&s.claimedJob, `SELECT ` + jobColumns + jobFrom + ` WHERE jobs.id = ?`},
		{&s.finishForward, `UPDATE forwards SET attempts = attempts + 1, last_status = ?,
			last_error = ?, lease_until = NULL, state = ?, next_attempt_at = ?,
			delivered_at = COALESCE(?, delivered_at)
			WHERE job_row = (SELECT id FROM jobs WHERE job_id = ?) AND claims = ? AND state = 'pending'
			RETURNING job_row`},
		{&s.insertAttempt, `INSERT INTO forward_attempts
			(job_row, attempt, at, took_ms, status, error, state) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&s.pauseReason, `SELECT value FROM meta WHERE key = '` + pauseKey + `'`},
		{&s.dueForwards, `SELECT job_row, next_attempt_at, lease_until
		FROM forwards INDEXED BY forwards_state WHERE state = 'pending' ORDER BY seq LIMIT ?`},
	} {
		stmt, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = stmt
	}
	return &s, nil
}

func (s *statements) close() {
	for _, st := range []*sql.Stmt{s.jobState, s.insertEnded, s.endJob, s.countWebhook, s.insertDelivery,
		s.insertUnjobbed, s.lastSeq, s.lastCreated, s.addCounter, s.setSeq, s.enqueueForward[0],
		s.enqueueForward[1], s.enqueueForward[2], s.enqueueForward[3],
		s.claimForward, s.claimedJob, s.finishForward, s.insertAttempt, s.pauseReason, s.dueForwards} {
		if st != nil {
			st.Close()
		}
	}
}
