package sqlite

import (
	"context"
	"sync"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

var _ store.Leadership = (*Store)(nil)

// AcquireLeadership always succeeds: a SQLite log is one process's (Open
// refuses a file another process holds), so that process is the poller.
func (s *Store) AcquireLeadership(ctx context.Context) (store.Lease, bool, error) {
	return &lease{lost: make(chan struct{})}, true, nil
}

// lease is a SQLite store's leadership: nobody can take it away, and the
// last request is kept in memory, since no other process shares the file.
type lease struct {
	mu   sync.Mutex
	last time.Time
	lost chan struct{}
	once sync.Once
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) NoteRequest(ctx context.Context, t time.Time) error {
	select {
	case <-l.lost:
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: leadership was released")
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.last) {
		l.last = t
	}
	return nil
}

func (l *lease) LastRequest(ctx context.Context) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

func (l *lease) Release() error {
	l.once.Do(func() { close(l.lost) })
	return nil
}
