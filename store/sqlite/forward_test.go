package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

func openForwarding(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	return openWith(t, path, sqlite.Options{Forward: true})
}

// One process has the file, so a lease found at Open is a dead process's:
// Open clears it, and the forward is claimed at once rather than when the
// lease would have run out. The pause, and every forward's state, survive
// the restart.
func TestOpenClearsLeasesAndKeepsThePause(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	s := openForwarding(t, path)
	for _, id := range []string{"a", "b", "c"} {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second)
	claims, err := s.ClaimForwards(ctx, now, 3, time.Hour, false)
	if err != nil || len(claims) != 3 {
		t.Fatalf("claim: got %d, %v", len(claims), err)
	}
	if ok, err := s.FinishForward(ctx, claims[1], store.ForwardResult{At: now, Status: 410,
		Err: "app answered 410", State: store.ForwardPaused}); err != nil || !ok {
		t.Fatalf("finish b: %v, %v", ok, err)
	}
	if err := s.Close(); err != nil { // a and c still leased for an hour
		t.Fatal(err)
	}

	s = openForwarding(t, path)
	st, err := s.ForwardStats(ctx)
	if err != nil || !st.Paused || st.PauseReason != "app answered 410" || st.ByState[store.ForwardPaused] != 1 {
		t.Fatalf("stats after reopen: got %+v, %v; want still paused with b", st, err)
	}
	if err := s.ResumeForwarding(ctx, now); err != nil {
		t.Fatal(err)
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || next.After(now) {
		t.Fatalf("NextForwardAt after reopen: got %s, %v, %v; want due by %s, not at the old leases' end", next, ok, err, now)
	}
	again, err := s.ClaimForwards(ctx, now, 3, time.Hour, false)
	if err != nil || len(again) != 3 || again[0].Job.JobID != "a" || again[0].Attempt != 1 || again[0].Token == claims[0].Token {
		t.Fatalf("claim after reopen: got %+v, %v; want a, b, c again, a with a new token", again, err)
	}
	if ok, err := s.FinishForward(ctx, claims[0], store.ForwardResult{At: now, Status: 200, State: store.ForwardDelivered}); err != nil || ok {
		t.Fatalf("the dead process's result: got ok=%v, %v; want refused", ok, err)
	}
}

// A log written before forwarding existed gains the queue's tables on
// upgrade, and its ended jobs can be replayed to the app.
func TestUpgradeThenReplayForwardsOldJobs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db := rawDB(t, path)
	for _, name := range []string{"0001_init.sql", "0002_growth.sql"} {
		if err := execFile(ctx, db, "migrations/"+name); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, q := range []string{
		`CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		`INSERT INTO schema_migrations VALUES ('migrations/0001_init.sql', 1), ('migrations/0002_growth.sql', 1)`,
		fmt.Sprintf(`INSERT INTO jobs (id, job_id, status, terminal, source, created_at, updated_at, terminal_at, seq)
			VALUES (1, 'o1', 'completed', 1, 'webhook', %[1]d, %[1]d, %[1]d, 1),
			       (2, 'o2', 'running', 0, '', %[1]d, %[1]d, NULL, NULL)`, base),
		`UPDATE counters SET n = 1 WHERE name = 'seq'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	db.Close()
	s := openForwarding(t, path)
	if j, err := s.Job(ctx, "o1"); err != nil || j.Forward != nil {
		t.Fatalf("o1 after upgrade: got forward %+v, %v; want none", j.Forward, err)
	}
	now := time.Now()
	if n, err := s.ReplayForwards(ctx, now, 0); err != nil || n != 1 {
		t.Fatalf("replay: got %d, %v; want 1", n, err)
	}
	claims, err := s.ClaimForwards(ctx, now, 10, time.Minute, false)
	if err != nil || len(claims) != 1 || claims[0].Job.JobID != "o1" {
		t.Fatalf("claim after replay: got %+v, %v; want o1", claims, err)
	}
}

// The writer retries each op of a failed batch alone, so a retry refused
// for an unknown job must refuse itself without failing the batch: the
// refusal is ErrNotFound, not ErrUnavailable, and a webhook committed in
// the same batch is kept.
func TestRefusedRetrySharesABatch(t *testing.T) {
	ctx := context.Background()
	s := openForwarding(t, filepath.Join(t.TempDir(), "nh.db"))
	deliver(t, s, report("a", "completed"))
	errs := make(chan error, 40)
	for i := range 20 {
		go func() {
			_, err := s.RetryForwards(ctx, time.Now(), []string{"a", "missing"})
			errs <- err
		}()
		go func() {
			_, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(fmt.Sprint(i)), ReceivedAt: time.Now(),
				Report: report(fmt.Sprint("w", i), "completed")})
			errs <- err
		}()
	}
	refused := 0
	for range 40 {
		err := <-errs
		switch {
		case err == nil:
		case store.ErrorCode(err) == store.ENOTFOUND:
			refused++
		default:
			t.Errorf("got %v, want nil or ErrNotFound", err)
		}
	}
	if refused != 20 {
		t.Fatalf("refused retries: got %d, want 20", refused)
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardPending] != 21 {
		t.Fatalf("stats: got %+v, %v; want a and the 20 webhooks' jobs pending", st, err)
	}
}

// execFile runs the SQL file at path on db.
func execFile(ctx context.Context, db *sql.DB, path string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, string(body))
	return err
}

// The forward counters behind ForwardStats follow every write that moves a
// forward: each step below is checked against a count of the rows.
func TestForwardCountersFollowEveryChange(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	s := openForwarding(t, path)
	db := rawDB(t, path)
	check := func(step string) {
		t.Helper()
		st, err := s.ForwardStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[store.ForwardState]int{store.ForwardPending: 0, store.ForwardDelivered: 0,
			store.ForwardFailed: 0, store.ForwardPaused: 0}
		rows, err := db.QueryContext(ctx, `SELECT state, COUNT(*) FROM forwards GROUP BY state`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var state store.ForwardState
			var n int
			if err := rows.Scan(&state, &n); err != nil {
				t.Fatal(err)
			}
			want[state] = n
		}
		rows.Close()
		if fmt.Sprint(st.ByState) != fmt.Sprint(want) {
			t.Fatalf("after %s: counters %v, rows %v", step, st.ByState, want)
		}
	}
	for i := range 12 {
		deliver(t, s, report(fmt.Sprint("j", i), "completed"))
	}
	deliver(t, s, report("j0", "completed")) // a duplicate queues nothing
	check("job ends")
	now := time.Now().Add(time.Second)
	claims, err := s.ClaimForwards(ctx, now, 12, time.Minute, false)
	if err != nil || len(claims) != 12 {
		t.Fatal(len(claims), err)
	}
	results := []store.ForwardResult{
		{At: now, Status: 200, State: store.ForwardDelivered},
		{At: now, Status: 500, Err: "500", State: store.ForwardFailed},
		{At: now, Status: 503, Err: "503", State: store.ForwardPending, Next: now},
		{At: now, Status: 410, Err: "410", State: store.ForwardPaused},
	}
	for i, c := range claims {
		if _, err := s.FinishForward(ctx, c, results[i%len(results)]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.FinishForward(ctx, claims[0], results[1]); err != nil { // stale: nothing moves
		t.Fatal(err)
	}
	check("results")
	if _, err := s.RetryForwards(ctx, now, []string{"j0", "j1", "j3"}); err != nil {
		t.Fatal(err)
	}
	check("retry")
	if _, err := s.ReplayForwards(ctx, now, 8); err != nil {
		t.Fatal(err)
	}
	check("replay")
	again, err := s.ClaimForwards(ctx, now, 12, time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range again[:2] {
		if _, err := s.FinishForward(ctx, c, results[3]); err != nil {
			t.Fatal(err)
		}
	}
	check("pause")
	if err := s.ResumeForwarding(ctx, now); err != nil {
		t.Fatal(err)
	}
	check("resume")
	if n, err := s.Prune(ctx, time.Now().Add(time.Hour), 5); err != nil || n != 2 { // the others wait to be sent
		t.Fatalf("Prune: %d, %v", n, err)
	}
	check("prune")
}

// A replay longer than one write's chunk queues every job after the seq
// once, in several writes, and the counters follow.
func TestReplayInChunks(t *testing.T) {
	ctx := context.Background()
	path, base := queueLog(t, 2_500, 700, false) // seqs 1-700 pending, the rest delivered
	s := openForwarding(t, path)
	at := base.Add(time.Hour)
	n, err := s.ReplayForwards(ctx, at, 10)
	if err != nil || n != 2_490 {
		t.Fatalf("replay after 10: got %d, %v; want 2490", n, err)
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardPending] != 2_500 || st.ByState[store.ForwardDelivered] != 0 || st.Depth != 2_500 {
		t.Fatalf("stats after the replay: got %+v, %v; want all 2500 pending", st, err)
	}
	var fs []store.QueuedForward
	for cursor := ""; ; {
		page, next, err := s.ListForwards(ctx, store.ForwardFilter{Limit: store.MaxLimit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, page...)
		if cursor = next; next == "" {
			break
		}
	}
	if len(fs) != 2_500 {
		t.Fatalf("listed %d forwards, want 2500", len(fs))
	}
	for i, f := range fs {
		want := at
		if f.Seq <= 10 {
			want = base
		}
		if f.Seq != int64(i+1) || !f.EnqueuedAt.Equal(want) || f.Attempts != 0 && f.Seq > 10 {
			t.Fatalf("forward %d: got seq %d queued at %s, %d attempts; want seq %d queued at %s", i, f.Seq, f.EnqueuedAt, f.Attempts, i+1, want)
		}
	}
}

// Jobs that end in one write queue their forwards together, in inserts of
// 64, 16, 4 and 1 rows: 85 ends take one of each. Every job gets its
// forward, pending and due at its end, and the counters count each once.
func TestEndsInOneWriteQueueEveryForward(t *testing.T) {
	ctx := context.Background()
	s := openForwarding(t, filepath.Join(t.TempDir(), "nh.db"))
	const n = 85
	for i := range n {
		if _, _, err := s.Track(ctx, fmt.Sprintf("x%03d", i), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.ExpireJobs(ctx, time.Now().Add(time.Hour))
	if err != nil || len(ids) != n {
		t.Fatalf("expire: %d jobs, %v", len(ids), err)
	}
	seqs := map[int64]bool{}
	for i := range n {
		j, err := s.Job(ctx, fmt.Sprintf("x%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		if f := j.Forward; f == nil || f.State != store.ForwardPending || f.NextAttemptAt == nil ||
			j.TerminalAt == nil || !f.NextAttemptAt.Equal(*j.TerminalAt) {
			t.Fatalf("job %s: forward %+v, ended %v", j.JobID, f, j.TerminalAt)
		}
		seqs[j.Seq] = true
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardPending] != n || st.Depth != n {
		t.Fatalf("stats %+v, %v; want %d pending", st, err, n)
	}
	page, _, err := s.ListForwards(ctx, store.ForwardFilter{Limit: store.MaxLimit})
	if err != nil || len(page) != n {
		t.Fatalf("queue: %d forwards, %v", len(page), err)
	}
	for _, q := range page {
		if !seqs[q.Seq] {
			t.Fatalf("forward of %s has seq %d, not its job's", q.JobID, q.Seq)
		}
	}
	claims, err := s.ClaimForwards(ctx, time.Now().Add(2*time.Hour), n, time.Minute, false)
	if err != nil || len(claims) != n {
		t.Fatalf("claim: %d, %v", len(claims), err)
	}
}
