package postgres

import (
	"context"
	"fmt"
	"testing"
)

// TestSequencerFloorStopsAtAnOpenEnd: the sequencer's floor rises, but
// never past a transaction still open, so an end whose
// transaction was open through many runs is numbered once it commits.
func TestSequencerFloorStopsAtAnOpenEnd(t *testing.T) {
	dbURL := freshSchema(t)
	s := openTest(t, dbURL, Options{})
	ctx := context.Background()
	floor := func() (f uint64) {
		t.Helper()
		if err := s.pool.QueryRow(ctx, `SELECT floor::text::numeric FROM feed_counter`).Scan(&f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	events := func(after int64) ([]string, int64) {
		t.Helper()
		jobs, last, err := s.Events(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.JobID)
		}
		return ids, last
	}

	// An ending transaction that stays open, as a slow replica's would.
	open, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(ctx)
	var slowXid uint64
	err = open.QueryRow(ctx, `WITH j AS (INSERT INTO jobs (job_id, status, terminal, created_at, updated_at, terminal_at)
		VALUES ('slow', 'completed', true, 1, 1, 1) RETURNING id)
		INSERT INTO feed (job_row) SELECT id FROM j RETURNING xid::text::numeric`).Scan(&slowXid)
	if err != nil {
		t.Fatal(err)
	}

	for i := range 5 {
		for k := range 10 {
			if _, err := s.RecordWebhook(ctx, completed(fmt.Sprintf("job-%d-%d", i, k))); err != nil {
				t.Fatal(err)
			}
		}
		events(0) // numbers what is visible
	}
	ids, last := events(0)
	if len(ids) != 50 || last != 50 {
		t.Fatalf("got %d events up to seq %d before the open end commits; want 50, 50", len(ids), last)
	}
	// Other transactions of the cluster (other tests) may hold the floor
	// lower; none may let it pass the open end.
	if f := floor(); f > slowXid || f == 0 {
		t.Fatalf("floor is %d with the end of transaction %d open; want it raised, to that transaction at most", f, slowXid)
	}

	if err := open.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordWebhook(ctx, completed("after")); err != nil {
		t.Fatal(err)
	}
	ids, last = events(50)
	if fmt.Sprint(ids) != "[slow after]" && fmt.Sprint(ids) != "[after slow]" || last != 52 {
		t.Fatalf("after the open end committed: got %v up to seq %d; want slow and after, up to 52", ids, last)
	}
	// Once the transactions older than the end have finished, the floor
	// passes it.
	for i := 0; floor() <= slowXid; i++ {
		if i == 200 {
			t.Fatalf("floor is %d after 200 more ends; want it above %d", floor(), slowXid)
		}
		if _, err := s.RecordWebhook(ctx, completed(fmt.Sprintf("more-%d", i))); err != nil {
			t.Fatal(err)
		}
		events(last)
	}
}
