package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
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
	bound map[*sql.Stmt]*sql.Stmt
	// w holds counter changes and the seq, written by flushCounters.
	w writeState
}

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
		return fmt.Errorf("%w: store is closed", ErrUnavailable)
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
// others queued with it.
func (s *Store) commit(batch []*op) {
	ended, err := s.runTx(batch)
	if err == nil {
		s.finish(batch, nil, ended)
		return
	}
	if len(batch) == 1 || errors.Is(err, errCommit) {
		s.log.Error().Err(err).Int("batch", len(batch)).Msg("store write failed")
		s.finish(batch, unavailable(err), false)
		return
	}
	for _, o := range batch {
		ended, err := s.runTx([]*op{o})
		if err != nil {
			s.log.Error().Err(err).Msg("store write failed")
		}
		s.finish([]*op{o}, unavailable(err), ended)
	}
}

// errCommit marks a failure of COMMIT itself (disk full, I/O error), which
// retrying op by op would only repeat.
var errCommit = errors.New("commit")

func (s *Store) runTx(batch []*op) (ended bool, err error) {
	ctx := context.Background() // queued writes finish even if callers go away
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%w: begin: %w", errCommit, err)
	}
	defer tx.Rollback()
	t := &txn{ctx: ctx, tx: tx, stmts: s.stmts, now: s.now().UTC(), bound: map[*sql.Stmt]*sql.Stmt{}}
	for _, o := range batch {
		if err := o.fn(t); err != nil {
			return false, err
		}
	}
	if err := t.flushCounters(); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("%w: %w", errCommit, err)
	}
	return t.ended, nil
}

func (s *Store) finish(batch []*op, err error, ended bool) {
	if ended {
		s.changes.broadcast()
	}
	for _, o := range batch {
		o.done <- err
	}
}

// Ping reports whether the store can commit a write: it updates one row
// through the writer, the same path deliveries take.
func (s *Store) Ping(ctx context.Context) error {
	return s.write(ctx, func(t *txn) error {
		_, err := t.tx.ExecContext(t.ctx,
			`INSERT INTO meta (key, value) VALUES ('ping', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			t.now.Format(time.RFC3339Nano))
		return err
	})
}
