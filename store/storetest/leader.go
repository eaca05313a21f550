package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// RunLeadership runs the suite's tests of store.Leadership as subtests of
// t, on stores from open as Run does. Each backend that shares the poller's
// state between leaders calls it beside Run.
func RunLeadership(t *testing.T, open func(t *testing.T, o Options) store.Store) {
	for _, tt := range []struct {
		name string
		fn   func(t *testing.T, s store.Store, ld store.Leadership)
	}{
		{"PollerStateHandedOver", testPollerStateHandedOver},
		{"LockOutsAreKeptPerKey", testLockOutsAreKeptPerKey},
		{"ReleasedLeaseNotesNothing", testReleasedLeaseNotesNothing},
		{"KeyMustBeAFingerprint", testKeyMustBeAFingerprint},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, Options{})
			t.Cleanup(func() { s.Close() })
			ld, ok := s.(store.Leadership)
			if !ok {
				t.Fatalf("%T is no store.Leadership", s)
			}
			tt.fn(t, s, ld)
		})
	}
}

const (
	fingerprintA = "0123456789abcdef"
	fingerprintB = "fedcba9876543210"
)

// acquire takes the lead, which on a store of its own is free.
func acquire(t *testing.T, ld store.Leadership) store.Lease {
	t.Helper()
	l, ok, err := ld.AcquireLeadership(context.Background())
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership: got ok=%v, %v; want ok", ok, err)
	}
	return l
}

func pollerState(t *testing.T, ld store.Leadership, key string) store.PollerState {
	t.Helper()
	st, err := ld.PollerState(context.Background(), key)
	if err != nil {
		t.Fatalf("PollerState(%q): %v", key, err)
	}
	return st
}

// testPollerStateHandedOver: what one lease notes, the next leader reads;
// a pause replaces the one before, even one that ends sooner.
func testPollerStateHandedOver(t *testing.T, s store.Store, ld store.Leadership) {
	ctx := context.Background()
	if st := pollerState(t, ld, fingerprintA); st != (store.PollerState{}) {
		t.Fatalf("PollerState of an empty log: got %+v, want zero", st)
	}
	l := acquire(t, ld)
	// A request noted and its poll recorded: every backend then has a last
	// request no earlier than the one noted (SQLite keeps the poll's).
	noted := time.Now().Add(-time.Second).Truncate(time.Microsecond)
	if _, _, err := s.Track(ctx, "job-1", noted); err != nil {
		t.Fatal(err)
	}
	if err := l.NoteRequest(ctx, noted); err != nil {
		t.Fatalf("NoteRequest: %v", err)
	}
	res := store.PollResult{Report: &store.Report{JobID: "job-1", Status: store.StatusRunning}, Next: noted.Add(time.Minute)}
	if _, err := s.RecordPoll(ctx, "job-1", res); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2026, 11, 27, 10, 2, 0, 123456789, time.UTC)
	for _, p := range []store.PollerPause{
		{Until: until.Add(time.Hour), Reason: "X-RateLimit-Remaining is low"},
		{Until: until, Reason: "Nouvel answered 429"},
	} {
		if err := l.NotePause(ctx, p); err != nil {
			t.Fatalf("NotePause(%+v): %v", p, err)
		}
	}
	refused := store.LockOut{At: until.Add(-time.Minute), Reason: "nouvel answered 401: invalid API key"}
	if err := l.NoteLockOut(ctx, fingerprintA, refused); err != nil {
		t.Fatalf("NoteLockOut: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}

	next := acquire(t, ld)
	defer next.Release()
	st := pollerState(t, ld, fingerprintA)
	if st.LastRequest.Before(noted) || st.LastRequest.After(time.Now()) {
		t.Errorf("LastRequest: got %s, want from the request noted at %s until now", st.LastRequest, noted)
	}
	if !st.Pause.Until.Equal(until) || st.Pause.Reason != "Nouvel answered 429" {
		t.Errorf("Pause: got %+v, want the last one noted, until %s for a 429", st.Pause, until)
	}
	if !st.LockOut.At.Equal(refused.At) || st.LockOut.Reason != refused.Reason {
		t.Errorf("LockOut: got %+v, want %+v", st.LockOut, refused)
	}
	if st := pollerState(t, ld, ""); !st.LockOut.At.IsZero() || !st.Pause.Until.Equal(until) {
		t.Errorf("PollerState for no key: got %+v, want the pause and no lock-out", st)
	}
}

// testLockOutsAreKeptPerKey: a lock-out belongs to one key; clearing it
// leaves another key's.
func testLockOutsAreKeptPerKey(t *testing.T, s store.Store, ld store.Leadership) {
	ctx := context.Background()
	l := acquire(t, ld)
	defer l.Release()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i, key := range []string{fingerprintA, fingerprintB} {
		lo := store.LockOut{At: at.Add(time.Duration(i) * time.Second), Reason: "refused " + key}
		if err := l.NoteLockOut(ctx, key, lo); err != nil {
			t.Fatalf("NoteLockOut(%s): %v", key, err)
		}
	}
	if got := pollerState(t, ld, fingerprintB).LockOut; got.Reason != "refused "+fingerprintB || !got.At.Equal(at.Add(time.Second)) {
		t.Errorf("lock-out of B: got %+v", got)
	}
	if got := pollerState(t, ld, "00ff").LockOut; !got.At.IsZero() {
		t.Errorf("lock-out of a key never refused: got %+v, want none", got)
	}
	if err := l.NoteLockOut(ctx, fingerprintA, store.LockOut{}); err != nil {
		t.Fatalf("clear the lock-out of A: %v", err)
	}
	if got := pollerState(t, ld, fingerprintA).LockOut; !got.At.IsZero() {
		t.Errorf("lock-out of A after clearing it: got %+v, want none", got)
	}
	if got := pollerState(t, ld, fingerprintB).LockOut; got.Reason != "refused "+fingerprintB {
		t.Errorf("lock-out of B after clearing A's: got %+v, want it kept", got)
	}
	if err := l.NoteLockOut(ctx, fingerprintA, store.LockOut{}); err != nil {
		t.Errorf("clear a lock-out that is not there: %v, want nil", err)
	}
}

// testReleasedLeaseNotesNothing: once released, a lease refuses to note
// anything, and nothing it was asked to note is kept.
func testReleasedLeaseNotesNothing(t *testing.T, s store.Store, ld store.Leadership) {
	ctx := context.Background()
	l := acquire(t, ld)
	l.Release()
	l.Release() // harmless
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if err := l.NotePause(ctx, store.PollerPause{Until: at, Reason: "late"}); err == nil {
		t.Error("NotePause after Release: got nil, want an error")
	}
	if err := l.NoteLockOut(ctx, fingerprintA, store.LockOut{At: at, Reason: "late"}); err == nil {
		t.Error("NoteLockOut after Release: got nil, want an error")
	}
	if err := l.NoteRequest(ctx, at); err == nil {
		t.Error("NoteRequest after Release: got nil, want an error")
	}
	if st := pollerState(t, ld, fingerprintA); !st.Pause.Until.IsZero() || !st.LockOut.At.IsZero() {
		t.Errorf("PollerState after notes refused: got %+v, want no pause and no lock-out", st)
	}
}

// testKeyMustBeAFingerprint: what looks like an API key rather than a
// fingerprint is refused, not written down.
func testKeyMustBeAFingerprint(t *testing.T, s store.Store, ld store.Leadership) {
	ctx := context.Background()
	l := acquire(t, ld)
	defer l.Release()
	for _, key := range []string{"nvl_live_0123456789", "0123456789ABCDEF", string(make([]byte, 65))} {
		err := l.NoteLockOut(ctx, key, store.LockOut{At: time.Now(), Reason: "refused"})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("NoteLockOut(%q): got %v, want ErrInvalid", key, err)
		}
		if _, err := ld.PollerState(ctx, key); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PollerState(%q): got %v, want ErrInvalid", key, err)
		}
	}
}
