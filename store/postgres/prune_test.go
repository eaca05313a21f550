package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
)

// A delivered forward that a retry queues again while Prune runs keeps its
// job: Prune chose the job while the forward was delivered, waits on the
// retry's lock, then reads the forward as pending and passes the job over.
func TestPruneKeepsAForwardRequeuedMeanwhile(t *testing.T) {
	ctx := context.Background()
	dbURL := freshSchema(t)
	s := openTest(t, dbURL, Options{Now: fixedClock, Forward: true})
	endJob(t, s, "x")
	endJob(t, s, "y")
	for _, c := range claimAt(t, s, t0, 2, time.Minute, false) {
		if ok, err := s.FinishForward(ctx, c, store.ForwardResult{At: t0, Status: 200, State: store.ForwardDelivered}); err != nil || !ok {
			t.Fatalf("finish %s: %v, %v", c.Job.JobID, ok, err)
		}
	}

	// The retry's statement, in a transaction held open.
	conn, err := pgx.Connect(ctx, pgtest.Direct(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var retryPID uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&retryPID); err != nil {
		t.Fatal(err)
	}
	retry, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer retry.Rollback(ctx)
	if _, err := retry.Exec(ctx, requeue(`SELECT jobs.id, feed.seq FROM `+numberedJobs+` AND jobs.job_id = ANY($2)`), clampNanos(t0),
		[]string{"x"}); err != nil {
		t.Fatal(err)
	}

	type result struct {
		n   int
		err error
	}
	pruned := make(chan result, 1)
	go func() {
		n, err := s.Prune(ctx, t0.Add(time.Hour), 10)
		pruned <- result{n, err}
	}()
	for waiting := false; !waiting; {
		select {
		case r := <-pruned:
			t.Fatalf("Prune returned %d, %v while the retry held x's forward; want it to wait", r.n, r.err)
		default:
		}
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE $1::int = ANY(pg_blocking_pids(pid)))`, retryPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := retry.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-pruned; r.err != nil || r.n != 1 {
		t.Fatalf("Prune: got %d, %v; want 1, y alone", r.n, r.err)
	}
	if j, err := s.Job(ctx, "x"); err != nil || j.Forward == nil || j.Forward.State != store.ForwardPending {
		t.Fatalf("x after Prune: %+v, %v; want it kept, its forward pending", j.Forward, err)
	}
	if _, err := s.Job(ctx, "y"); err == nil {
		t.Error("y after Prune: still there, want it pruned")
	}
}
