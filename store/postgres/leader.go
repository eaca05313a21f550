package postgres

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
)

const (
	// leaderKey is the session advisory lock the polling replica holds,
	// keyed by the schema like the migration lock, so that logs in other
	// schemas of the database elect their own.
	leaderKey = `hashtext('nouvelhook poller ' || current_schema())`
	// leaseCheck is how often the lock's connection is checked, so that a
	// leader cut off from Postgres stops within a few seconds rather than
	// at its next request.
	leaseCheck = 2 * time.Second
	// leaseTimeout bounds one statement on the lock's connection.
	leaseTimeout = 5 * time.Second
)

var _ store.Leadership = (*Store)(nil)

// AcquireLeadership tries once to take a session advisory lock on a
// connection of its own, taken out of the pool. The lock lives exactly as
// long as that session: a replica killed with SIGKILL drops its connection
// and Postgres releases the lock at once, so another replica's next try
// wins. ok is false when another session holds it; an error wraps
// store.ErrUnavailable.
func (s *Store) AcquireLeadership(ctx context.Context) (store.Lease, bool, error) {
	if s.closed.Load() {
		return nil, false, store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, s.leaseErr(err)
	}
	var ok bool
	if err := pc.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+leaderKey+`)`).Scan(&ok); err != nil {
		pc.Release()
		return nil, false, s.leaseErr(err)
	}
	if !ok {
		pc.Release()
		return nil, false, nil
	}
	// The connection leaves the pool, so that the lock is never handed to
	// another caller with it.
	l := &lease{s: s, conn: pc.Hijack(), lost: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l, true, nil
}

func (s *Store) leaseErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: poller lock: %s", s.scrub(err))
}

// lease is leadership held through the session of conn.
type lease struct {
	s *Store

	mu   sync.Mutex // serialises statements on conn
	conn *pgx.Conn

	lost     chan struct{} // closed once the lock may be gone
	lostOnce sync.Once
	done     chan struct{} // closed by Release, to stop watch
	doneOnce sync.Once
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

// NoteRequest runs on the lock's own connection: if it succeeds, the
// session, and so the lock, was alive when the request was noted, and the
// next leader, which can take the lock only after this session ends, reads
// the time noted.
func (l *lease) NoteRequest(ctx context.Context, t time.Time) error {
	return l.upsert(ctx, store.PollerLastRequestRow, strconv.FormatInt(t.UnixNano(), 10))
}

// NotePause runs on the lock's connection, as NoteRequest does, so that a
// pause noted is there for the next leader to read.
func (l *lease) NotePause(ctx context.Context, p store.PollerPause) error {
	return l.upsert(ctx, store.PollerPauseRow, store.PollerPauseValue(p))
}

// NoteLockOut runs on the lock's connection, as NoteRequest does.
func (l *lease) NoteLockOut(ctx context.Context, key string, lo store.LockOut) error {
	if err := store.CheckKeyFingerprint(key); err != nil {
		return err
	}
	if lo.At.IsZero() {
		if err := l.exec(ctx, `DELETE FROM meta WHERE key = $1`, store.PollerLockOutRowPrefix+key); err != nil {
			return l.s.leaseErr(err)
		}
		return nil
	}
	return l.upsert(ctx, store.PollerLockOutRowPrefix+key, store.LockOutValue(lo))
}

// upsert sets a meta row on the lock's connection.
func (l *lease) upsert(ctx context.Context, key, value string) error {
	err := l.exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return l.s.leaseErr(err)
	}
	return nil
}

// PollerState reads the poller's rows in one statement, on the pool: a new
// leader reads it after taking the lock, which the leader before held
// until all it noted had committed.
func (s *Store) PollerState(ctx context.Context, key string) (store.PollerState, error) {
	var st store.PollerState
	names, err := store.PollerRows(key)
	if err != nil {
		return st, err
	}
	if s.closed.Load() {
		return st, store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM meta WHERE key = ANY($1)`, names)
	if err != nil {
		return st, s.dbErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return st, s.dbErr(err)
		}
		if err := st.ReadPollerRow(k, v); err != nil {
			return st, err
		}
	}
	if err := rows.Err(); err != nil {
		return st, s.dbErr(err)
	}
	return st, nil
}

// Release closes the lock's connection, which ends the session and with it
// the lock.
func (l *lease) Release() error {
	l.doneOnce.Do(func() { close(l.done) })
	l.lose()
	return nil
}

// exec runs sql on the lock's connection; any failure loses the lease,
// since the session may be gone.
func (l *lease) exec(ctx context.Context, sql string, args ...any) error {
	select {
	case <-l.lost:
		return errors.New("leadership lost")
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	defer cancel()
	l.mu.Lock()
	_, err := l.conn.Exec(ctx, sql, args...)
	l.mu.Unlock()
	if err != nil {
		l.lose()
	}
	return err
}

// lose closes lost and the connection, once.
func (l *lease) lose() {
	l.lostOnce.Do(func() {
		close(l.lost)
		l.mu.Lock()
		defer l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		defer cancel()
		// Unlock first: closing ends the session and the lock with it, but
		// Postgres drops a closed session's locks a moment later, and the
		// next leader should find the lock free at once.
		_, _ = l.conn.Exec(ctx, `SELECT pg_advisory_unlock(`+leaderKey+`)`)
		_ = l.conn.Close(ctx)
	})
}

func (l *lease) released() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// watch checks the lock's connection every leaseCheck until the lease is
// released or lost.
func (l *lease) watch() {
	t := time.NewTicker(leaseCheck)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.lost:
			return
		case <-t.C:
			if err := l.exec(context.Background(), `SELECT 1`); err != nil && !l.released() {
				l.s.log.Warn().Str("error", l.s.scrub(err)).Msg("lost the poller lock's connection; polling stops here")
			}
		}
	}
}
