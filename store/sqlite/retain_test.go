package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// TestQueryPlansUseIndexes checks that the statements whose cost must not
// grow with the log read an index range, not every row, and that the pages
// come out of the index in order rather than through a sort.
func TestQueryPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	one, oneArgs := listQuery([]store.Status{store.StatusCompleted}, 1, 100, 501)
	many, manyArgs := listQuery([]store.Status{store.StatusCompleted, store.StatusFailed}, 1, 100, 501)
	all, allArgs := listQuery(nil, 1, 100, 501)
	for _, c := range []struct {
		name   string
		query  string
		args   []any
		sorted bool // rows must come out of the index in order
	}{
		{"list one status", one, oneArgs, true},
		{"list several statuses", many, manyArgs, true},
		{"list all", all, allArgs, true},
		{"since probe", `SELECT id, created_at FROM jobs WHERE id >= ? ORDER BY id LIMIT 1`, []any{1}, true},
		{"expire", expireDue, []any{1}, false},
		{"missed", markMissed, []any{1, 1}, false},
		{"prune", pruneOldest, []any{1}, true},
		{"prune unjobbed", pruneUnjobbedDue, []any{1}, false},
		// A job has one row per distinct body, a handful: sorting them is fine.
		{"deliveries of a job", `SELECT received_at, attempt, outcome, status, copies
			FROM deliveries WHERE job_row = ? ORDER BY id DESC LIMIT ?`, []any{1, 100}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.query, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			t.Logf("%s", strings.Join(plan, " | "))
			for _, d := range plan {
				if d == "SCAN jobs" || d == "SCAN deliveries" || d == "SCAN d" {
					t.Errorf("plan reads every row: %q in %q", d, plan)
				}
				if c.sorted && strings.Contains(d, "TEMP B-TREE") {
					t.Errorf("plan sorts: %q in %q", d, plan)
				}
			}
		})
	}
}

func TestPruneDeletesEndedJobsAndNeverReusesSeq(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end := func(id string, at time.Time, copies int) {
		t.Helper()
		now = at
		for range copies {
			_, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{"jobId":"` + id + `"}`), ReceivedAt: at,
				Report: &store.Report{JobID: id, Status: store.StatusCompleted}})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	end("a", t0, 3)
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{bad`), ReceivedAt: t0, Problem: "bad JSON"}); err != nil {
		t.Fatal(err)
	}
	end("b", t0.Add(time.Hour), 1)
	end("c", t0.Add(2*time.Hour), 2)
	if _, _, err := s.Track(ctx, "open", t0); err != nil { // never ends: never pruned
		t.Fatal(err)
	}
	count := func(q string) int {
		t.Helper()
		var n int
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	cutoff := t0.Add(90 * time.Minute)
	for i, want := range []int{1, 1, 0} {
		if n, err := s.Prune(ctx, cutoff, 1); err != nil || n != want {
			t.Fatalf("Prune %d: got %d, %v; want %d", i+1, n, err, want)
		}
	}
	for _, c := range []struct {
		query string
		want  int
	}{
		{`SELECT COUNT(*) FROM jobs`, 2},
		{`SELECT COUNT(*) FROM deliveries`, 1},
		{`SELECT COUNT(*) FROM deliveries WHERE job_row IS NULL`, 0},
	} {
		if got := count(c.query); got != c.want {
			t.Errorf("%s: got %d, want %d", c.query, got, c.want)
		}
	}
	if _, err := s.Job(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pruned job a: got %v, want ErrNotFound", err)
	}
	events, last, err := s.Events(ctx, 1, 10) // a cursor inside pruned history
	if err != nil || len(events) != 1 || events[0].JobID != "c" || last != 3 {
		t.Fatalf("Events after 1: got %d events, last %d, %v; want c alone, last 3", len(events), last, err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Stats{Jobs: 2, ByStatus: map[string]int{"completed": 1, "pending": 1}, BySource: map[string]int{"webhook": 1},
		Deliveries: 2, Duplicates: 1, LastSeq: 3}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("stats after pruning:\ngot  %+v\nwant %+v", st, want)
	}

	// Prune every ended job, then end one more: it takes the next seq.
	if n, err := s.Prune(ctx, t0.Add(24*time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("Prune all: got %d, %v; want 1", n, err)
	}
	end("d", t0.Add(3*time.Hour), 1)
	if j, err := s.Job(ctx, "d"); err != nil || j.Seq != 4 {
		t.Fatalf("job ended after pruning everything: got seq %d, %v; want 4", j.Seq, err)
	}
	if _, err := s.Prune(ctx, t0, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Prune batch 0: got %v, want ErrInvalid", err)
	}
}
