package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// A SQLite log is one process's, so that process always leads; the lease
// keeps the last request noted and refuses to note one once released.
func TestLeadershipAlwaysHeld(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	ctx := context.Background()
	l, ok, err := s.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership: got ok=%v, %v; want ok", ok, err)
	}
	noted := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{noted.Add(-time.Second), noted} {
		if err := l.NoteRequest(ctx, at); err != nil {
			t.Fatalf("NoteRequest(%s): %v", at, err)
		}
	}
	if got, err := l.LastRequest(ctx); err != nil || !got.Equal(noted) {
		t.Errorf("LastRequest: got %v, %v; want %v", got, err, noted)
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost is closed before Release")
	default:
	}
	l.Release()
	select {
	case <-l.Lost():
	default:
		t.Error("Lost is open after Release")
	}
	if err := l.NoteRequest(ctx, noted); err == nil {
		t.Error("NoteRequest after Release: got nil, want an error")
	}
}
