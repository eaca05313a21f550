package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
	"github.com/nouvelhook/nouvelhook/store/storetest"
)

func TestLeadershipConformance(t *testing.T) {
	storetest.RunLeadership(t, func(t *testing.T, o storetest.Options) store.Store {
		return openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	})
}

// A SQLite log is one process's, so that process always leads; the lease
// refuses to note anything once released.
func TestLeadershipAlwaysHeld(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	ctx := context.Background()
	l, ok, err := s.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership: got ok=%v, %v; want ok", ok, err)
	}
	if l2, ok, err := s.AcquireLeadership(ctx); err != nil || !ok {
		t.Fatalf("AcquireLeadership again: got ok=%v, %v; want ok", ok, err)
	} else {
		l2.Release()
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost is closed before Release")
	default:
	}
	noted := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if err := l.NoteRequest(ctx, noted); err != nil {
		t.Fatalf("NoteRequest: %v", err)
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

// The pause and the lock-out outlive the process: a restart reads them
// back from the file, with the last poll recorded as the last request.
func TestPollerStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nh.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := s.AcquireLeadership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	pause := store.PollerPause{Until: at.Add(time.Minute), Reason: "Nouvel answered 429"}
	refused := store.LockOut{At: at, Reason: "nouvel answered 403: missing projects:read"}
	if err := l.NotePause(ctx, pause); err != nil {
		t.Fatal(err)
	}
	if err := l.NoteLockOut(ctx, "abc123", refused); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Track(ctx, "job-1", at); err != nil {
		t.Fatal(err)
	}
	polled := time.Now()
	if _, err := s.RecordPoll(ctx, "job-1", store.PollResult{Failed: true, Err: "502", Next: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	st, err := s.PollerState(ctx, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Pause.Until.Equal(pause.Until) || st.Pause.Reason != pause.Reason {
		t.Errorf("pause after a restart: got %+v, want %+v", st.Pause, pause)
	}
	if !st.LockOut.At.Equal(refused.At) || st.LockOut.Reason != refused.Reason {
		t.Errorf("lock-out after a restart: got %+v, want %+v", st.LockOut, refused)
	}
	if st.LastRequest.Before(polled.Add(-time.Second)) || st.LastRequest.After(time.Now()) {
		t.Errorf("last request after a restart: got %s, want the poll recorded at about %s", st.LastRequest, polled)
	}
}
