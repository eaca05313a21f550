package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nouvelhook/nouvelhook/store"
)

// txConn is the connection a write transaction runs on: its statements
// run between the BEGIN and the COMMIT that runTx sends.
type txConn interface {
	querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// txn is one write transaction as the write helpers see it.
type txn struct {
	ctx context.Context
	tx  txConn
	now time.Time
	// deltas are counter changes, written once just before COMMIT.
	deltas map[string]int64
	// ended are the rows of the jobs this transaction ended, in order. They
	// commit with seq NULL; the sequencer numbers them (see sequence.go).
	ended []int64
	// forward: each end also queues the job's forward (Options.Forward).
	forward bool
}

// write queues fn and waits until the transaction holding it has committed
// or failed. An error means nothing fn wrote was kept (or, when COMMIT itself
// failed for want of a connection, that it is not known: the caller answers
// 503 and Nouvel retries, which is idempotent). Once queued, the op runs
// whatever the caller's ctx does, and the caller waits for its fate, so a
// write is never reported failed when it committed. fn may run more than
// once (see commit), so it must depend only on the transaction it is given.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	return s.enqueue(ctx, &op{fn: fn})
}

// enqueue queues o and waits for its fate, as write does.
// The op's writeTimeout runs from this call: a write that waits for a turn
// behind a stalled one fails at its own deadline, not the other's plus its
// own.
func (s *Store) enqueue(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	o.deadline = time.Now().Add(writeTimeout)
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	queue := s.ops
	if o.end != nil {
		queue = s.ends
	}
	full := time.NewTimer(writeTimeout)
	defer full.Stop()
	select {
	case queue <- o:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	case <-full.C:
		s.closeMu.RUnlock()
		s.finish([]*op{o}, errNoTurn)
	}
	return <-o.done
}

// errNoTurn fails a write whose deadline passed before a writer took it up:
// the writes ahead of it are stalled.
var errNoTurn = fmt.Errorf("no turn to write within %s: the writes ahead are stalled", writeTimeout)

// op is one queued write.
type op struct {
	fn   func(t *txn) error
	done chan error
	// size is the delivery body it stores, probe the bytes a readiness
	// probe writes: what its commit, or its failure, says about room.
	size, probe int
	// deadline is when the op fails if it has not committed.
	deadline time.Time
	// end, when set, is a delivery ending a job, which endNewJobs writes
	// with the batch's other ends of new jobs unless its job is known, and
	// outcome is what it did.
	end     *newEnd
	outcome store.Outcome
}

// maxBatch bounds how many queued writes share one transaction.
const maxBatch = 256

// writeLoop takes the first op queued on ops, then whatever else is queued
// at that moment, and commits them together (group commit): concurrent
// webhooks share one commit, and one turn on the counter rows, instead of
// queuing for them one by one. Each queue has one writeLoop: the ends of
// jobs by webhook (ends), whose batches commit as one statement
// (endNewJobs), and every other write (ops), so that a long write, a prune
// of thousands of jobs say, never holds webhooks up.
func (s *Store) writeLoop(ops <-chan *op) {
	defer s.writersDone.Done()
	batch := make([]*op, 0, maxBatch)
	for o := range ops {
		batch = append(batch[:0], o)
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

// commit runs batch in one transaction, retrying a deadlock or a
// serialization failure twice. If an op fails, the transaction is rolled
// back and each op is retried alone, so one bad write cannot sink the
// others; when Postgres cannot be reached, all fail at once.
// Ops whose deadline has passed while they were queued fail at once.
func (s *Store) commit(batch []*op) {
	now := time.Now()
	live := batch[:0]
	var late []*op
	for _, o := range batch {
		if now.Before(o.deadline) {
			live = append(live, o)
		} else {
			late = append(late, o)
		}
	}
	if len(late) > 0 {
		s.finish(late, errNoTurn)
	}
	if batch = s.endNewJobs(live); len(batch) == 0 {
		return
	}
	err := s.runBatch(batch)
	if err == nil || len(batch) == 1 || unreachable(err) {
		s.finish(batch, err)
		return
	}
	for _, o := range batch {
		s.finish([]*op{o}, s.runBatch([]*op{o}))
	}
}

func (s *Store) finish(batch []*op, err error) {
	now := s.now().UTC()
	size := 0 // the largest write of the batch: a delivery or a probe
	for _, o := range batch {
		size = max(size, o.size, o.probe)
	}
	if err != nil {
		msg := s.scrub(err)
		s.health.observe(now, err, msg, size)
		s.log.Error().Str("error", msg).Int("batch", len(batch)).Msg("store write failed")
		err = store.Errorf(store.EUNAVAILABLE, "store unavailable: %s", msg)
	} else {
		s.health.observe(now, nil, "", size)
	}
	for _, o := range batch {
		o.done <- err
	}
}

// deadline is the earliest deadline of batch's ops.
func deadline(batch []*op) time.Time {
	d := batch[0].deadline
	for _, o := range batch[1:] {
		if o.deadline.Before(d) {
			d = o.deadline
		}
	}
	return d
}

// runBatch runs batch until the earliest deadline of its ops.
func (s *Store) runBatch(batch []*op) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline(batch))
	defer cancel()
	for attempt := 0; ; attempt++ {
		t, err := s.runTx(ctx, batch)
		if err == nil {
			if len(t.ended) > 0 {
				s.kickSeq()
			}
			return nil
		}
		if attempt == 2 || !retryable(err) {
			return err
		}
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// runTx runs batch in one transaction on a connection of the pool.
func (s *Store) runTx(ctx context.Context, batch []*op) (*txn, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	t := &txn{ctx: ctx, tx: conn, now: s.now().UTC(), forward: s.forward}
	if err = t.run(batch); err != nil {
		// A connection left inside the transaction, as when this ROLLBACK
		// cannot be sent, is closed by Release rather than reused.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		conn.Exec(rctx, "ROLLBACK")
		cancel()
	}
	conn.Release()
	return t, err
}

// run runs batch between BEGIN and COMMIT.
func (t *txn) run(batch []*op) error {
	if _, err := t.tx.Exec(t.ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for _, o := range batch {
		if err := o.fn(t); err != nil {
			return err
		}
	}
	return t.commit()
}

// count adds n to a counter when the transaction commits.
func (t *txn) count(name string, n int64) {
	if t.deltas == nil {
		t.deltas = map[string]int64{}
	}
	t.deltas[name] += n
}

// counterShards is how many rows each counter is spread over. Each
// transaction adds its changes to the rows of one shard, chosen at random,
// so that concurrent commits, of this replica's writers and of others',
// seldom wait on the same counter row; a count is the sum of its shards.
const counterShards = 64

// commit writes the counter changes to one shard's rows, in name order
// so that two transactions on the same shard never wait on each other's
// counters in a circle, then commits, in one round trip.
func (t *txn) commit() error {
	names := make([]string, 0, len(t.deltas))
	ns := make([]int64, 0, len(t.deltas))
	for name, n := range t.deltas {
		if n != 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		ns = append(ns, t.deltas[name])
	}
	b := &pgx.Batch{}
	if len(names) > 0 {
		b.Queue(`INSERT INTO counters (name, shard, n)
			SELECT name, $3, n FROM unnest($1::text[], $2::bigint[]) AS d (name, n) ORDER BY name
			ON CONFLICT (name, shard) DO UPDATE SET n = counters.n + excluded.n`, names, ns, rand.IntN(counterShards))
	}
	b.Queue("COMMIT")
	br := t.tx.SendBatch(t.ctx, b)
	defer br.Close()
	if len(names) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("count: %w", err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		// Postgres answers COMMIT with ROLLBACK when the transaction had
		// failed: nothing was kept.
		return errors.New("commit: the transaction was rolled back")
	}
	return br.Close()
}

// Counter names in the counters table, as in the SQLite backend;
// newEnds' statement builds the same names in SQL.
func statusCounter(status store.Status) string { return "status:" + string(status) }
func sourceCounter(source string) string       { return "source:" + source }
func outcomeCounter(o store.Outcome) string    { return "outcome:" + string(o) }

const missedCounter = "missed"

// RecordWebhook commits a verified delivery: its raw bytes in the delivery
// log and, for a usable event, the job's terminal state and feed entry, all
// in one transaction, and returns once that has committed. An error
// wrapping store.ErrUnavailable means nothing was stored.
func (s *Store) RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	hash := sha256.Sum256(d.Body)
	if d.Report == nil {
		return store.OutcomeInvalid, s.enqueue(ctx, &op{size: len(d.Body), fn: func(t *txn) error {
			return t.insertDelivery(d, hash[:], 0, store.OutcomeInvalid)
		}})
	}
	if err := d.Report.CheckEnd(); err != nil {
		return "", err
	}
	projects, err := store.EncodeProjects(d.Report.Projects)
	if err != nil {
		return "", err
	}
	o := endOp(d, hash[:], projects)
	if err := s.enqueue(ctx, o); err != nil {
		return "", err
	}
	return o.outcome, nil
}

// endOp is the write of a delivery d that ends its job: endNewJobs's when
// the job is new, else fn's.
func endOp(d store.WebhookDelivery, hash []byte, projects string) *op {
	o := &op{size: len(d.Body), end: &newEnd{d: d, hash: hash, projects: projects}}
	o.fn = func(t *txn) error {
		var row int64
		var err error
		if o.outcome, row, err = t.endJob(d.Report, projects, store.SourceWebhook); err != nil {
			return err
		}
		return t.insertDelivery(d, hash, row, o.outcome)
	}
	return o
}

// newEnd is a verified delivery that ends its job, as the batched insert
// of new jobs (endNewJobs) takes it.
type newEnd struct {
	d        store.WebhookDelivery
	hash     []byte
	projects string
}

// endNewJobs writes, in one statement that commits on its own, the
// deliveries of batch that end a job the log has not heard of: their jobs,
// ended, with feed rows (and forwards), the deliveries themselves and the
// counters. A batch of webhooks for new jobs, the common case under load,
// thus costs Postgres one statement and one round trip, rather than two
// statements per webhook in a transaction of four more. It answers the
// ops it wrote and returns the others, for a transaction of their own: a
// job already known, a second delivery for a job of the batch, an op that
// is not such a delivery, or all of them when the statement failed, which
// then committed nothing. When Postgres cannot be reached, whether the
// statement committed is not known, so it fails them all instead: each
// webhook gets a 503, and Nouvel's retry of it, or a poll, is idempotent,
// where writing them again now would count each twice. The jobs are
// inserted in job_id order, so that two statements inserting some of the
// same jobs wait for each other in one order and cannot deadlock.
func (s *Store) endNewJobs(batch []*op) []*op {
	var idx []int
	seen := make(map[string]bool)
	for i, o := range batch {
		if o.end != nil && !seen[o.end.d.Report.JobID] {
			seen[o.end.d.Report.JobID] = true
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return batch
	}
	n := len(idx)
	var (
		ids, statuses, projects, stages, problems = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		totals, completed, failed, attempts       = make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
		received                                  = make([]int64, n)
		bodies, hashes                            = make([][]byte, n), make([][]byte, n)
	)
	at := make(map[string]int, n) // job id → index in batch
	for k, i := range idx {
		e := batch[i].end
		r := e.d.Report
		at[r.JobID] = i
		ids[k], statuses[k], projects[k], stages[k], problems[k] = r.JobID, string(r.Status), e.projects, r.Stage, e.d.Problem
		totals[k], completed[k], failed[k], attempts[k] = int32(r.TotalProjects), int32(r.CompletedProjects),
			int32(r.FailedProjects), int32(e.d.Attempt)
		received[k], bodies[k], hashes[k] = e.d.ReceivedAt.UnixNano(), e.d.Body, e.hash
	}
	q := newEndsSQL
	if s.forward {
		q = newEndsForwardSQL
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline(batch))
	defer cancel()
	written := make([]bool, len(batch))
	var err error
	for attempt := 0; ; attempt++ {
		clear(written)
		var rows pgx.Rows
		rows, err = s.pool.Query(ctx, q, ids, statuses, totals, completed, failed, projects, stages, received,
			attempts, problems, bodies, hashes, store.SourceWebhook, s.now().UTC().UnixNano(),
			string(store.OutcomeAccepted), rand.IntN(counterShards))
		if err == nil {
			var id string
			_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
				written[at[id]] = true
				return nil
			})
		}
		if err == nil || attempt == 2 || !retryable(err) {
			break
		}
	}
	if err != nil {
		if unreachable(err) {
			s.finish(batch, fmt.Errorf("end new jobs: %w", err))
			return nil
		}
		s.log.Warn().Str("error", s.scrub(err)).Int("batch", len(batch)).
			Msg("writing the ends of new jobs in one statement failed; writing them one by one")
		return batch
	}
	var done, rest []*op
	for i, o := range batch {
		if written[i] {
			o.outcome = store.OutcomeAccepted
			done = append(done, o)
		} else {
			rest = append(rest, o)
		}
	}
	if len(done) > 0 {
		s.finish(done, nil)
		s.kickSeq()
	}
	return rest
}

// newEndsSQL is endNewJobs' statement; newEndsForwardSQL also queues the
// jobs' forwards. The counters take the changes in one shard ($16), in name
// order, as in commit.
var (
	newEndsSQL        = newEnds(false)
	newEndsForwardSQL = newEnds(true)
)

func newEnds(forward bool) string {
	q := `WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::text[],
			$7::text[], $8::bigint[], $9::int[], $10::text[], $11::bytea[], $12::bytea[])
			AS i (job_id, status, total, completed, failed, projects, stage, received_at, attempt, error, body, body_hash)),
		j AS (INSERT INTO jobs (job_id, status, terminal, total_projects, completed_projects, failed_projects,
			projects, source, progress, stage, webhook_deliveries, created_at, updated_at, terminal_at)
			SELECT job_id, status, true, total, completed, failed, projects, $13, 100, stage, 1, $14, $14, $14
			FROM i ORDER BY job_id
			ON CONFLICT (job_id) DO NOTHING RETURNING id, job_id, status),
		e AS (` + feedEnqueue + ` SELECT id FROM j),
		d AS (INSERT INTO deliveries (job_row, job_id, received_at, last_received_at, attempt, status, outcome,
			error, body, body_hash)
			SELECT j.id, i.job_id, i.received_at, i.received_at, i.attempt, i.status, $15, i.error, i.body, i.body_hash
			FROM j JOIN i USING (job_id)),
		c AS (INSERT INTO counters (name, shard, n)
			SELECT name, $16, count(*) FROM (SELECT 'status:' || status FROM j
				UNION ALL SELECT 'source:' || $13::text FROM j UNION ALL SELECT 'outcome:' || $15::text FROM j) AS x (name)
			GROUP BY name ORDER BY name
			ON CONFLICT (name, shard) DO UPDATE SET n = counters.n + excluded.n)`
	if forward {
		q += `, f AS (` + forwardEnqueue + ` SELECT id, NULL::bigint, 'pending', $14, $14 FROM j` + forwardEnqueueEnd + `)`
	}
	return q + ` SELECT job_id FROM j`
}

// endJob applies a terminal report learned from source and returns what it
// did and the job's row. The first terminal report wins: the job's row is
// locked before it is read, so of two concurrent reports the second sees
// the first's end. A later report only bumps the webhook counter.
func (t *txn) endJob(r *store.Report, projects, source string) (store.Outcome, int64, error) {
	webhooks := 0
	if source == store.SourceWebhook {
		webhooks = 1
	}
	now := t.now.UnixNano()
	var row int64
	// The job's feed row, and its forward, commit with seq NULL: the
	// sequencer numbers them once they are visible. The same statement
	// writes them all: no round trip more.
	q := `WITH j AS (INSERT INTO jobs (job_id, status, terminal, total_projects, completed_projects,
		failed_projects, projects, source, progress, stage, webhook_deliveries, created_at, updated_at, terminal_at)
		VALUES ($1, $2, true, $3, $4, $5, $6, $7, 100, $8, $9, $10, $10, $10)
		ON CONFLICT (job_id) DO NOTHING RETURNING id), e AS (` + feedEnqueue + ` SELECT id FROM j)`
	if t.forward {
		q += `, f AS (` + forwardEnqueue + ` SELECT id, NULL::bigint, 'pending', $10, $10 FROM j` +
			forwardEnqueueEnd + `)`
	}
	q += ` SELECT id FROM j`
	err := t.tx.QueryRow(t.ctx, q, r.JobID, r.Status, r.TotalProjects,
		r.CompletedProjects, r.FailedProjects, projects, source, r.Stage, webhooks, now).Scan(&row)
	if err == nil {
		t.count(statusCounter(r.Status), 1)
		t.count(sourceCounter(source), 1)
		t.ended = append(t.ended, row)
		return store.OutcomeAccepted, row, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) { // no row: the job was known
		return "", 0, err
	}
	var cur struct {
		status                   store.Status
		terminal                 bool
		total, completed, failed int
	}
	err = t.tx.QueryRow(t.ctx, `SELECT id, status, terminal, total_projects, completed_projects, failed_projects
		FROM jobs WHERE job_id = $1 FOR UPDATE`, r.JobID).
		Scan(&row, &cur.status, &cur.terminal, &cur.total, &cur.completed, &cur.failed)
	if err != nil {
		return "", 0, err
	}
	if !cur.terminal {
		q := `UPDATE jobs SET status = $1, terminal = true, total_projects = $2,
			completed_projects = $3, failed_projects = $4, projects = $5, source = $6, progress = 100, stage = $7,
			webhook_deliveries = webhook_deliveries + $8, updated_at = $9, terminal_at = $9, next_poll_at = NULL
			WHERE id = $10`
		if t.forward {
			q = `WITH j AS (` + q + `), e AS (` + feedEnqueue + ` VALUES ($10)) ` + forwardEnqueue +
				` VALUES ($10, NULL, 'pending', $9, $9)` + forwardEnqueueEnd
		} else {
			q = `WITH j AS (` + q + `) ` + feedEnqueue + ` VALUES ($10)`
		}
		_, err = t.tx.Exec(t.ctx, q, r.Status, r.TotalProjects, r.CompletedProjects, r.FailedProjects, projects,
			source, r.Stage, webhooks, now, row)
		if err != nil {
			return "", 0, err
		}
		t.count(statusCounter(cur.status), -1)
		t.count(statusCounter(r.Status), 1)
		t.count(sourceCounter(source), 1)
		t.ended = append(t.ended, row)
		return store.OutcomeAccepted, row, nil
	}
	if webhooks > 0 {
		if _, err = t.tx.Exec(t.ctx, `UPDATE jobs SET webhook_deliveries = webhook_deliveries + 1 WHERE id = $1`, row); err != nil {
			return "", 0, err
		}
	}
	if cur.status == r.Status && cur.total == r.TotalProjects && cur.completed == r.CompletedProjects &&
		cur.failed == r.FailedProjects {
		return store.OutcomeDuplicate, row, nil
	}
	return store.OutcomeConflict, row, nil
}

// feedEnqueue precedes the row (job_row) of a job's feed entry, which its
// end inserts with seq NULL for the sequencer to number.
const feedEnqueue = `INSERT INTO feed (job_row)`

// forwardEnqueue and forwardEnqueueEnd wrap the rows (job_row, seq, state,
// next_attempt_at, enqueued_at) of the forwards a job's end queues. A job
// that had not ended has no forward, so the conflict cannot happen; were it
// to, it must not fail the webhook.
const (
	forwardEnqueue    = `INSERT INTO forwards (job_row, seq, state, next_attempt_at, enqueued_at)`
	forwardEnqueueEnd = ` ON CONFLICT (job_row) DO NOTHING`
)

// deliveryInsert and copyOf are shared by the two delivery inserts, which
// differ only in the unique index a copy is found by.
const (
	deliveryInsert = `INSERT INTO deliveries (job_row, job_id, received_at, last_received_at, attempt, status,
		outcome, error, body, body_hash) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9)`
	copyOf = ` DO UPDATE SET copies = deliveries.copies + 1,
		last_received_at = GREATEST(COALESCE(deliveries.last_received_at, deliveries.received_at), excluded.received_at)`
)

// insertDelivery stores a delivery of the job at row (0: none), or, when
// the same bytes are already stored for that job, counts one more copy.
func (t *txn) insertDelivery(d store.WebhookDelivery, hash []byte, row int64, outcome store.Outcome) error {
	var jobRow, jobID any
	status := ""
	q := deliveryInsert + ` ON CONFLICT (body_hash) WHERE job_row IS NULL` + copyOf
	if row != 0 {
		jobRow, q = row, deliveryInsert+` ON CONFLICT (job_row, body_hash)`+copyOf
	}
	if d.Report != nil {
		jobID, status = d.Report.JobID, string(d.Report.Status)
	} else if d.JobID != "" {
		jobID = d.JobID
	}
	_, err := t.tx.Exec(t.ctx, q, jobRow, jobID, d.ReceivedAt.UnixNano(), d.Attempt, status, string(outcome),
		d.Problem, d.Body, hash)
	if err != nil {
		return err
	}
	t.count(outcomeCounter(outcome), 1)
	return nil
}

// Track adds a job the log has not heard of, as pending, with its first
// poll due at firstPoll. created is false when the job was already known;
// either way the job is returned as it now stands.
func (s *Store) Track(ctx context.Context, jobID string, firstPoll time.Time) (j store.Job, created bool, err error) {
	if !store.ValidJobID(jobID) {
		return store.Job{}, false, store.Errorf(store.EINVALID, "jobId must be 1-128 letters, digits, '-' or '_'")
	}
	err = s.write(ctx, func(t *txn) error {
		now := t.now.UnixNano()
		tag, err := t.tx.Exec(t.ctx, `INSERT INTO jobs (job_id, status, created_at, updated_at, next_poll_at)
			VALUES ($1, $2, $3, $3, $4) ON CONFLICT (job_id) DO NOTHING`, jobID, store.StatusPending, now,
			firstPoll.UnixNano())
		if err != nil {
			return err
		}
		if created = tag.RowsAffected() == 1; created {
			t.count(statusCounter(store.StatusPending), 1)
		}
		return nil
	})
	if err != nil {
		return store.Job{}, false, err
	}
	j, err = s.Job(context.WithoutCancel(ctx), jobID) // committed: answer as stored
	return j, created, err
}

// RecordPoll commits a poll of jobID. A terminal Report goes through the
// same path as a webhook, with source poll, so the job ends once whichever
// comes first; the outcome says which. An error wrapping
// store.ErrUnavailable means nothing was stored.
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
	pollStatus := ""
	if r.Report != nil {
		pollStatus = string(r.Report.Status)
	}
	var outcome store.Outcome
	err := s.write(ctx, func(t *txn) error {
		outcome = ""
		now := t.now.UnixNano()
		if end != nil {
			var err error
			if outcome, _, err = t.endJob(end, projects, store.SourcePoll); err != nil {
				return err
			}
			_, err = t.tx.Exec(t.ctx, `WITH j AS (UPDATE jobs SET poll_count = poll_count + 1, last_error = $1,
				poll_ended_at = CASE WHEN $2::boolean AND poll_ended_at IS NULL THEN $3 ELSE poll_ended_at END
				WHERE job_id = $4 RETURNING id) `+pollInsert(6),
				r.Err, r.End == "", now, jobID, pollStatus, outcome == store.OutcomeAccepted)
			return err
		}
		q := `UPDATE jobs SET poll_count = poll_count + 1, last_error = $1, next_poll_at = $2, updated_at = $3`
		args := []any{r.Err, r.Next.UnixNano(), now}
		switch {
		case r.Report != nil:
			// The status counters move with the status: read the old one,
			// locking the row so that no end slips in between.
			var was store.Status
			err := t.tx.QueryRow(t.ctx, `SELECT status FROM jobs WHERE job_id = $1 AND NOT terminal FOR UPDATE`,
				jobID).Scan(&was)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // unknown, or ended meanwhile: a stale poll changes nothing
			}
			if err != nil {
				return err
			}
			if was != r.Report.Status {
				t.count(statusCounter(was), -1)
				t.count(statusCounter(r.Report.Status), 1)
			}
			q += `, status = $4, progress = $5, stage = $6, total_projects = $7, completed_projects = $8,
				failed_projects = $9, poll_step = poll_step + 1, fail_count = 0, not_found_count = 0`
			args = append(args, r.Report.Status, r.Report.Progress, r.Report.Stage, r.Report.TotalProjects,
				r.Report.CompletedProjects, r.Report.FailedProjects)
		case r.NotFound:
			q += `, not_found_count = not_found_count + 1, fail_count = 0`
		case r.Failed:
			q += `, fail_count = fail_count + 1`
		}
		args = append(args, jobID, pollStatus, false)
		_, err := t.tx.Exec(t.ctx, `WITH j AS (`+q+` WHERE job_id = $`+strconv.Itoa(len(args)-2)+
			` AND NOT terminal RETURNING id) `+pollInsert(len(args)), args...)
		return err
	})
	if err != nil {
		return "", err
	}
	return outcome, nil
}

// pollInsert follows a CTE j that returns the polled job's row, and
// appends the poll to the job's timeline: its error is $1, its time $3, its
// status and whether it ended the job the last two arguments of n.
func pollInsert(n int) string {
	return fmt.Sprintf(`INSERT INTO polls (job_row, at, status, error, ended) SELECT id, $3, $%d, $1, $%d FROM j`,
		n-1, n)
}

// ExpireJobs ends as expired every job still not terminal that was tracked
// at or before cutoff, and returns their ids. When none is due it costs one
// read of an index that holds only jobs not yet terminal.
func (s *Store) ExpireJobs(ctx context.Context, cutoff time.Time) ([]string, error) {
	var due bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE NOT terminal AND created_at <= $1)`,
		cutoff.UnixNano()).Scan(&due)
	if err != nil || !due {
		return nil, s.dbErr(err)
	}
	var expired []string
	err = s.write(ctx, func(t *txn) error {
		rows, err := t.tx.Query(t.ctx, `SELECT job_id FROM jobs WHERE NOT terminal AND created_at <= $1
			ORDER BY created_at, id FOR UPDATE`, cutoff.UnixNano())
		if err != nil {
			return err
		}
		expired, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, id := range expired {
			if _, _, err := t.endJob(&store.Report{JobID: id, Status: store.StatusExpired}, "[]", store.SourcePoll); err != nil {
				return fmt.Errorf("expire %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return expired, nil
}

// MarkMissedWebhooks checks, once each, the jobs whose end a poll saw at or
// before now-grace, flags those with no verified webhook received within
// grace of that, and returns how many it flagged. The conditions are on the
// updated rows themselves, so that two replicas sweeping at once check each
// job once.
func (s *Store) MarkMissedWebhooks(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	cutoff := now.Add(-grace).UnixNano()
	const due = `poll_ended_at IS NOT NULL AND NOT missed_checked AND poll_ended_at <= $1`
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE `+due+`)`, cutoff).Scan(&found)
	if err != nil || !found {
		return 0, s.dbErr(err)
	}
	var n int
	err = s.write(ctx, func(t *txn) error {
		n = 0
		rows, err := t.tx.Query(t.ctx, `UPDATE jobs SET missed_checked = true,
			webhook_missed = NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_row = jobs.id
				AND d.outcome <> 'invalid' AND d.received_at <= jobs.poll_ended_at + $2)
			WHERE `+due+` RETURNING webhook_missed`, cutoff, grace.Nanoseconds())
		if err != nil {
			return err
		}
		missed, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			return err
		}
		for _, m := range missed {
			if m {
				n++
			}
		}
		t.count(missedCounter, int64(n))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Prune deletes up to batch jobs that ended before cutoff, with their
// deliveries, forwards, forward attempts and polls, in one write, and
// returns how many jobs it deleted; it also deletes up to batch signed
// deliveries that named no usable job and last arrived before cutoff. Jobs
// go in seq order and pruning stops at the first that ended at or after
// cutoff. A job whose forward waits to be sent (pending or paused) is
// passed over and kept until the forward is delivered or failed: the
// forwards of the jobs chosen are locked and read again before any delete,
// so a retry or replay that queues one again meanwhile keeps its job. The
// counters are adjusted from what the deletes return, so two replicas
// pruning at once never take a job out of them twice. seq comes from
// feed_counter, which pruning never lowers.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, batch int) (int, error) {
	if batch < 1 {
		return 0, store.Errorf(store.EINVALID, "prune batch must be 1 or more")
	}
	before := clampNanos(cutoff)
	if err := s.sequenced(ctx); err != nil { // jobs go in seq order
		return 0, s.dbErr(err)
	}
	var due bool
	err := s.pool.QueryRow(ctx, `SELECT COALESCE((SELECT jobs.terminal_at < $1 FROM `+numberedJobs+`
		AND `+forwardNotWaiting+` ORDER BY feed.seq LIMIT 1), false) OR EXISTS (SELECT 1 FROM deliveries WHERE job_row IS NULL
		AND COALESCE(last_received_at, received_at) < $1)`, before).Scan(&due)
	if err != nil || !due {
		return 0, s.dbErr(err)
	}
	var deleted int
	err = s.write(ctx, func(t *txn) error {
		deleted = 0
		rows, err := t.tx.Query(t.ctx, `SELECT jobs.id, jobs.terminal_at FROM `+numberedJobs+` AND `+
			forwardNotWaiting+` ORDER BY feed.seq LIMIT $1`, batch)
		if err != nil {
			return err
		}
		var ids []int64
		var id, ended int64
		stop := false // at the first job that ended too recently
		_, err = pgx.ForEachRow(rows, []any{&id, &ended}, func() error {
			if stop = stop || ended >= before; !stop {
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if ids, err = t.withoutWaitingForwards(ids); err != nil {
			return err
		}
		if len(ids) > 0 {
			for _, table := range []string{"feed", "forwards", "forward_attempts", "polls"} {
				if _, err := t.tx.Exec(t.ctx, `DELETE FROM `+table+` WHERE job_row = ANY($1)`, ids); err != nil {
					return fmt.Errorf("prune %s: %w", table, err)
				}
			}
			if err := t.uncount(`DELETE FROM deliveries WHERE job_row = ANY($1) RETURNING outcome, copies`, ids); err != nil {
				return err
			}
			rows, err := t.tx.Query(t.ctx, `DELETE FROM jobs WHERE id = ANY($1) RETURNING status, source, webhook_missed`, ids)
			if err != nil {
				return err
			}
			var status, source string
			var missed bool
			_, err = pgx.ForEachRow(rows, []any{&status, &source, &missed}, func() error {
				deleted++
				t.count(statusCounter(store.Status(status)), -1)
				if source != "" {
					t.count(sourceCounter(source), -1)
				}
				if missed {
					t.count(missedCounter, -1)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return t.uncount(`DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE job_row IS NULL
			AND COALESCE(last_received_at, received_at) < $1 LIMIT $2) RETURNING outcome, copies`, before, batch)
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

// numberedJobs is the jobs the sequencer has numbered, with their feed
// rows, to be followed by more conditions.
const numberedJobs = `feed JOIN jobs ON jobs.id = feed.job_row WHERE feed.seq IS NOT NULL`

// forwardNotWaiting holds for a job (of the table jobs) whose forward, if
// any, is not waiting to be sent: retention never removes a forward before
// the app has it, or it failed.
const forwardNotWaiting = `NOT EXISTS (SELECT 1 FROM forwards f WHERE f.job_row = jobs.id
	AND f.state IN ('pending', 'paused'))`

// withoutWaitingForwards locks the forwards of the jobs ids, in seq order
// (a replay's order), until the transaction ends, and returns ids without
// the jobs whose forward, as it now stands, waits to be sent: one a retry
// or replay has queued again since ids were chosen.
func (t *txn) withoutWaitingForwards(ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return ids, nil
	}
	// Every forward of ids is locked, whatever its state: a row that a
	// requeue is changing is read once that commits.
	rows, err := t.tx.Query(t.ctx, `SELECT job_row, state IN ('pending', 'paused') FROM forwards
		WHERE job_row = ANY($1) ORDER BY seq FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	waiting := map[int64]bool{}
	var id int64
	var wait bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &wait}, func() error {
		waiting[id] = wait
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock the forwards of the jobs to prune: %w", err)
	}
	return slices.DeleteFunc(ids, func(id int64) bool { return waiting[id] }), nil
}

// uncount runs a delete returning (outcome, copies) rows and takes what it
// deleted out of the counters. The first arrival has the row's outcome; a
// copy of bytes that ended the job found it ended the same way, and any
// other copy fared as the first did.
func (t *txn) uncount(q string, args ...any) error {
	rows, err := t.tx.Query(t.ctx, q, args...)
	if err != nil {
		return err
	}
	var outcome string
	var copies int64
	_, err = pgx.ForEachRow(rows, []any{&outcome, &copies}, func() error {
		o := store.Outcome(outcome)
		t.count(outcomeCounter(o), -1)
		if again := o; copies > 1 {
			if again == store.OutcomeAccepted {
				again = store.OutcomeDuplicate
			}
			t.count(outcomeCounter(again), 1-copies)
		}
		return nil
	})
	return err
}
