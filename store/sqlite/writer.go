package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/nouvelhook/nouvelhook/store"
)

// op is one queued write. fn may run more than once (see commit), so it must
// depend only on the transaction it is given.
type op struct {
	fn   func(t *txn) error
	done chan error
}

// txn is a write transaction as ops see it.
type txn struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts *statements
	now   time.Time
	// ended is set by an op that made some job terminal, so waiters on the
	// change feed are woken after the commit.
	ended bool
	// forward is Options.Forward: a job's end queues its forward.
	forward bool
	// enqueued are the forwards of the jobs ended so far, written by
	// flushForwards.
	enqueued []enqueued
	bound    map[*sql.Stmt]*sql.Stmt
	// w holds counter changes and the seq, written by flushCounters.
	w writeState
	// delivered is the largest delivery body, in bytes, that an op of this
	// transaction wrote (see delivering), and probe the size of a readiness
	// probe: what a commit proves about free space.
	delivered, probe int
}

// delivering notes that the op is writing a delivery body of n bytes, so
// that readiness knows how large a write must be to prove the disk has room
// again after a failed commit.
func (t *txn) delivering(n int) { t.delivered = max(t.delivered, n) }

// stmt is s bound to this transaction, once per transaction rather than
// once per use.
func (t *txn) stmt(s *sql.Stmt) *sql.Stmt {
	b, ok := t.bound[s]
	if !ok {
		b = t.tx.StmtContext(t.ctx, s)
		t.bound[s] = b
	}
	return b
}

// write queues fn and waits until the transaction holding it has committed
// or failed. An error means nothing fn wrote was kept.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	select {
	case s.ops <- o:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the op runs: wait for its fate even if ctx ends, so a
	// caller never reports failure for a write that was in fact committed.
	return <-o.done
}

// writeLoop is the only writer. It takes the first queued op, then whatever
// else is queued at that moment, and commits them together.
func (s *Store) writeLoop() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
	for o := range s.ops {
		batch = append(batch[:0], o)
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-s.ops:
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

// commit runs batch in one transaction. If an op fails the transaction is
// rolled back and each op is retried alone, so one bad write cannot sink the
// others queued with it. Every outcome also tells readiness (see Ping).
func (s *Store) commit(batch []*op) {
	t, err := s.runTx(batch)
	s.health.observe(t, err)
	if err == nil {
		s.finish(batch, nil, t.ended)
		return
	}
	if len(batch) == 1 || errors.Is(err, errCommit) {
		s.log.Error().Err(err).Int("batch", len(batch)).Msg("store write failed")
		s.finish(batch, unavailable(err), false)
		return
	}
	for _, o := range batch {
		t, err := s.runTx([]*op{o})
		s.health.observe(t, err)
		if err != nil {
			s.log.Error().Err(err).Msg("store write failed")
		}
		s.finish([]*op{o}, unavailable(err), err == nil && t.ended)
	}
}

// errCommit marks a failure of COMMIT itself (disk full, I/O error), which
// retrying op by op would only repeat.
var errCommit = errors.New("commit")

// runTx runs batch in one transaction and commits it. It returns the
// transaction, committed or not, so that readiness can see how large a
// write it was.
func (s *Store) runTx(batch []*op) (*txn, error) {
	ctx := context.Background() // queued writes finish even if callers go away
	t := &txn{ctx: ctx, stmts: s.stmts, now: s.now().UTC(), forward: s.forward, bound: map[*sql.Stmt]*sql.Stmt{}}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return t, fmt.Errorf("%w: begin: %w", errCommit, err)
	}
	defer tx.Rollback()
	t.tx = tx
	for _, o := range batch {
		if err := o.fn(t); err != nil {
			return t, err
		}
	}
	if err := t.flushCounters(); err != nil {
		return t, err
	}
	if err := tx.Commit(); err != nil {
		return t, fmt.Errorf("%w: %w", errCommit, err)
	}
	return t, nil
}

func (s *Store) finish(batch []*op, err error, ended bool) {
	if ended {
		s.changes.broadcast()
	}
	for _, o := range batch {
		o.done <- err
	}
}

// Ping reports whether the store takes deliveries. From the first commit
// that fails for want of storage (disk full, I/O error, read-only file)
// until a write at least as large as a delivery commits again, it returns
// that failure, wrapping ErrUnavailable: a tiny write can still fit on a
// full disk when deliveries do not. While failing, each Ping tries such a
// write itself (of the larger of Options.MaxBody and the failed delivery)
// and reports ready again once it commits; a delivery that commits clears
// it too. Otherwise Ping commits one small row through the writer, which
// shows the writer is alive and the file writable. Concurrent Pings share
// one write.
func (s *Store) Ping(ctx context.Context) error {
	h := &s.health
	h.mu.Lock()
	f := h.flight
	if f == nil {
		f = &pingFlight{done: make(chan struct{})}
		h.flight = f
		size := 0
		if h.failed != nil {
			size = max(h.need, s.maxBody)
		}
		go func() {
			f.err = s.probe(size)
			h.mu.Lock()
			h.flight = nil
			h.mu.Unlock()
			close(f.done)
		}()
	}
	h.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed reports, without writing, whether a commit has failed for want of
// storage since a delivery-sized write last committed, or the store is
// closed: the error Ping would start from. nil does not prove the store
// can commit; only Ping's write does.
func (s *Store) Failed() error {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	return s.health.err()
}

// probe writes size bytes through the writer (a small row when size is 0)
// and removes them again, and returns what readiness then is.
func (s *Store) probe(size int) error {
	ctx := context.Background() // a Ping that gives up leaves the probe to finish
	err := s.write(ctx, func(t *txn) error {
		t.probe = size
		if size == 0 {
			_, err := t.tx.ExecContext(t.ctx,
				`INSERT INTO meta (key, value) VALUES ('ping', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
				t.now.Format(time.RFC3339Nano))
			return err
		}
		_, err := t.tx.ExecContext(t.ctx,
			`INSERT INTO meta (key, value) VALUES ('probe', zeroblob(?)) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			size)
		return err
	})
	if err == nil && size > 0 {
		// The probe proved the room; giving it back is an ordinary write,
		// and a failure of it is an ordinary failed commit.
		err = s.write(ctx, func(t *txn) error {
			_, err := t.tx.ExecContext(t.ctx, `DELETE FROM meta WHERE key = 'probe'`)
			return err
		})
	}
	if herr := s.health.err(); herr != nil {
		return herr
	}
	return err
}

// health is what readiness knows of the commits so far.
type health struct {
	mu sync.Mutex
	// failed is the first storage failure since the last write that proved
	// there is room again, and at when it happened; nil when healthy.
	failed error
	at     time.Time
	// need is the size of the largest delivery in the failed transaction:
	// a committed write at least this large clears failed.
	need   int
	flight *pingFlight
}

// pingFlight is one probe that concurrent Pings wait for.
type pingFlight struct {
	done chan struct{}
	err  error
}

// observe updates readiness with the outcome of the transaction t.
func (h *health) observe(t *txn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.failed == nil && storageFailure(err) {
			h.failed, h.at, h.need = err, t.now, t.delivered
		}
		return
	}
	if h.failed != nil && (t.delivered > 0 || t.probe > 0) && max(t.delivered, t.probe) >= h.need {
		h.failed, h.need = nil, 0
	}
}

// err is the failure readiness reports, or nil.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed == nil {
		return nil
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: commits have failed since %s: %s",
		h.at.Format(time.RFC3339), strings.TrimSpace(h.failed.Error()))
}

// storageFailure reports whether err says the database cannot store a
// write, rather than that one op was wrong: a failed BEGIN or COMMIT, or a
// SQLite error about the disk, the file or its locks.
func storageFailure(err error) bool {
	if errors.Is(err, errCommit) {
		return true
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_PERM:
		return true
	}
	return false
}
