package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

var _ store.Leadership = (*Store)(nil)

// AcquireLeadership always succeeds: a SQLite log is one process's (Open
// refuses a file another process holds), so that process is the poller.
func (s *Store) AcquireLeadership(ctx context.Context) (store.Lease, bool, error) {
	return &lease{s: s, lost: make(chan struct{})}, true, nil
}

// PollerState reads what the poller kept in the file, so that it carries
// over a restart of the one process. The pause and the lock-out are meta
// rows, written once each time Nouvel answers 429 or 401/403. The last
// request is the last poll the log recorded, which costs no write of its
// own: a request that got a 429 or a refusal is not among them, but the
// pause or lock-out it caused is.
func (s *Store) PollerState(ctx context.Context, key string) (store.PollerState, error) {
	var st store.PollerState
	names, err := store.PollerRows(key)
	if err != nil {
		return st, err
	}
	var last sql.NullInt64
	err = s.rdb.QueryRowContext(ctx, `SELECT at FROM polls ORDER BY id DESC LIMIT 1`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, unavailable(err)
	}
	if last.Valid {
		st.LastRequest = fromNanos(last.Int64)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, value FROM meta WHERE key IN (?`+
		strings.Repeat(", ?", len(names)-1)+`)`, anys(names)...)
	if err != nil {
		return st, unavailable(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return st, unavailable(err)
		}
		if err := st.ReadPollerRow(k, v); err != nil {
			return st, err
		}
	}
	return st, unavailable(rows.Err())
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// lease is a SQLite store's leadership: nobody can take it away. Requests
// are not written down one by one (see PollerState); pauses and lock-outs
// are, through the writer.
type lease struct {
	s    *Store
	lost chan struct{}
	once sync.Once
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

// held is nil until the lease is released.
func (l *lease) held() error {
	select {
	case <-l.lost:
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: leadership was released")
	default:
		return nil
	}
}

func (l *lease) NoteRequest(ctx context.Context, t time.Time) error { return l.held() }

func (l *lease) NotePause(ctx context.Context, p store.PollerPause) error {
	return l.setMeta(ctx, store.PollerPauseRow, store.PollerPauseValue(p))
}

func (l *lease) NoteLockOut(ctx context.Context, key string, lo store.LockOut) error {
	if err := store.CheckKeyFingerprint(key); err != nil {
		return err
	}
	if lo.At.IsZero() {
		return l.setMeta(ctx, store.PollerLockOutRowPrefix+key, "")
	}
	return l.setMeta(ctx, store.PollerLockOutRowPrefix+key, store.LockOutValue(lo))
}

// setMeta writes the meta row name, or deletes it when value is "".
func (l *lease) setMeta(ctx context.Context, name, value string) error {
	if err := l.held(); err != nil {
		return err
	}
	return l.s.write(ctx, func(t *txn) error {
		var err error
		if value == "" {
			_, err = t.tx.ExecContext(t.ctx, `DELETE FROM meta WHERE key = ?`, name)
		} else {
			_, err = t.tx.ExecContext(t.ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, name, value)
		}
		return err
	})
}

func (l *lease) Release() error {
	l.once.Do(func() { close(l.lost) })
	return nil
}
