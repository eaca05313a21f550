package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
	"github.com/nouvelhook/nouvelhook/store/storetest"
)

// TestLeadershipConformance runs the suite's leadership tests, each on a
// fresh schema.
func TestLeadershipConformance(t *testing.T) {
	pgtest.BaseURL(t)
	storetest.RunLeadership(t, func(t *testing.T, o storetest.Options) store.Store {
		return openTest(t, freshSchema(t), Options{Forward: o.Forward})
	})
}

// Two stores on one schema: one leads at a time, the next leader reads the
// last request, the pause and the lock-out the one before noted, and a
// schema of its own elects apart.
func TestLeadershipOneAtATime(t *testing.T) {
	dbURL := freshSchema(t)
	a, b := openTest(t, dbURL, Options{}), openTest(t, dbURL, Options{})
	ctx := context.Background()

	la, ok, err := a.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("first AcquireLeadership: got ok=%v, %v; want ok", ok, err)
	}
	if _, ok, err := b.AcquireLeadership(ctx); err != nil || ok {
		t.Fatalf("second AcquireLeadership while the first leads: got ok=%v, %v; want not ok, nil", ok, err)
	}
	other := openTest(t, freshSchema(t), Options{})
	lo, ok, err := other.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership in another schema: got ok=%v, %v; want ok", ok, err)
	}
	defer lo.Release()

	const key = "5eed"
	if st, err := a.PollerState(ctx, key); err != nil || st != (store.PollerState{}) {
		t.Fatalf("PollerState before any: got %+v, %v; want zero", st, err)
	}
	noted := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
	if err := la.NoteRequest(ctx, noted); err != nil {
		t.Fatalf("NoteRequest: %v", err)
	}
	pause := store.PollerPause{Until: noted.Add(time.Minute), Reason: "Nouvel answered 429"}
	if err := la.NotePause(ctx, pause); err != nil {
		t.Fatalf("NotePause: %v", err)
	}
	refused := store.LockOut{At: noted, Reason: "nouvel answered 401: bad key"}
	if err := la.NoteLockOut(ctx, key, refused); err != nil {
		t.Fatalf("NoteLockOut: %v", err)
	}
	if err := la.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost is open after Release")
	}
	if err := la.NoteRequest(ctx, noted); err == nil {
		t.Error("NoteRequest after Release: got nil, want an error")
	}
	lb, ok, err := b.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership after Release: got ok=%v, %v; want ok", ok, err)
	}
	defer lb.Release()
	st, err := b.PollerState(ctx, key)
	if err != nil || !st.LastRequest.Equal(noted) || !st.Pause.Until.Equal(pause.Until) || st.Pause.Reason != pause.Reason ||
		!st.LockOut.At.Equal(refused.At) || st.LockOut.Reason != refused.Reason {
		t.Errorf("the next leader's PollerState: got %+v, %v; want last request %s, %+v, %+v", st, err, noted, pause, refused)
	}
	if st, err := other.PollerState(ctx, key); err != nil || st != (store.PollerState{}) {
		t.Errorf("PollerState in another schema: got %+v, %v; want zero", st, err)
	}
}

// A leader whose session ends (as when its process is killed, or Postgres
// drops it) loses the lock at once: another store takes it, and the old
// lease refuses to note a request and reports itself lost.
func TestLeadershipEndsWithTheSession(t *testing.T) {
	dbURL := freshSchema(t)
	a, b := openTest(t, dbURL, Options{}), openTest(t, dbURL, Options{})
	ctx := context.Background()
	la, ok, err := a.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership: got ok=%v, %v; want ok", ok, err)
	}
	pid := la.(*lease).conn.PgConn().PID()
	admin, err := pgx.Connect(ctx, pgtest.Direct(t, pgtest.BaseURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
		t.Fatalf("terminate the leader's session: %v", err)
	}
	// pg_terminate_backend with a timeout returns once the backend is gone,
	// and its locks with it.
	lb, ok, err := b.AcquireLeadership(ctx)
	if err != nil || !ok {
		t.Fatalf("AcquireLeadership after the leader's session ended: got ok=%v, %v; want ok", ok, err)
	}
	defer lb.Release()
	if err := la.NotePause(ctx, store.PollerPause{Until: time.Now(), Reason: "late"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("NotePause on the dead session: got %v, want ErrUnavailable", err)
	}
	select {
	case <-la.Lost():
	default:
		t.Error("Lost is open after the session ended and a request could not be noted")
	}
	if _, ok, err := a.AcquireLeadership(ctx); err != nil || ok {
		t.Errorf("the old leader's store tries again: got ok=%v, %v; want not ok while the other leads", ok, err)
	}
}
