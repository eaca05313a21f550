package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
	"github.com/nouvelhook/nouvelhook/store/storetest"
)

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	return openWith(t, path, sqlite.Options{})
}

// openWith opens the store at path with opts, closed at the test's end.
func openWith(t testing.TB, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func report(id string, status store.Status) *store.Report {
	return &store.Report{JobID: id, Status: status, TotalProjects: 2, CompletedProjects: 2,
		Projects: []store.Project{{ProjectID: "p1", Title: "t", Status: "completed", VideoURL: "https://v/1.mp4"}}}
}

// deliver records r as a delivery whose body is r's JSON, so equal reports
// are equal bytes, as they are from Nouvel.
func deliver(t *testing.T, s *sqlite.Store, r *store.Report) store.Outcome {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{
		Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: r})
	if err != nil {
		t.Fatalf("RecordWebhook(%s): %v", r.JobID, err)
	}
	return out
}

func TestReopenKeepsLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s, report("kept", "completed"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Report: report("late", "completed")}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write after Close: got %v, want ErrUnavailable", err)
	}
	s = openStore(t, path)
	j, err := s.Job(ctx, "kept")
	if err != nil || j.Seq != 1 {
		t.Fatalf("after reopen: got %+v, %v", j, err)
	}
	deliver(t, s, report("next", "completed"))
	if j, _ := s.Job(ctx, "next"); j.Seq != 2 {
		t.Fatalf("seq after reopen: got %d, want 2", j.Seq)
	}
}

// rawDB opens the store's file directly, to look at what is stored.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestReplayStoresBytesOnce looks at the delivery rows themselves: a
// replay is one row with copies and the last arrival time.
// storetest.IdenticalReplayStoredOnce checks the same through the API.
func TestReplayStoresBytesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	s := openStore(t, path)
	const replays = 50
	body := []byte(`{"event":"job.completed","jobId":"r1","status":"completed"}`)
	bad := []byte(`{"event":"job.completed","jobId":"r2","status":"done"}`)
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range replays {
		at := start.Add(time.Duration(i) * time.Second)
		out, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: body, ReceivedAt: at, Attempt: 1 + i%3, Report: report("r1", "completed")})
		if want := store.OutcomeDuplicate; i == 0 {
			want = store.OutcomeAccepted
			if out != want || err != nil {
				t.Fatalf("first delivery: got %s, %v; want %s", out, err, want)
			}
		} else if out != want || err != nil || !out.Duplicate() {
			t.Fatalf("replay %d: got %s, %v; want %s", i, out, err, want)
		}
		if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: bad, ReceivedAt: at, JobID: "r2", Problem: "bad status"}); err != nil {
			t.Fatal(err)
		}
	}
	// Other bytes for the same job are a row of their own.
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{"other":1}`), ReceivedAt: start, Report: report("r1", "completed")}); err != nil {
		t.Fatal(err)
	}

	type row struct {
		JobID            string
		Copies           int
		Received, LastAt int64
		Outcome          string
	}
	rows, err := rawDB(t, path).QueryContext(ctx, `SELECT COALESCE(job_id, ''), copies, received_at, last_received_at, outcome
		FROM deliveries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.JobID, &r.Copies, &r.Received, &r.LastAt, &r.Outcome); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	last := start.Add((replays - 1) * time.Second).UnixNano()
	want := []row{
		{"r1", replays, start.UnixNano(), last, "accepted"},
		{"r2", replays, start.UnixNano(), last, "invalid"},
		{"r1", 1, start.UnixNano(), start.UnixNano(), "duplicate"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivery rows:\ngot  %+v\nwant %+v", got, want)
	}

	j, err := s.JobWithDeliveries(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if j.WebhookDeliveries != replays+1 || j.DeliveriesTotal != replays+1 || len(j.Deliveries) != 2 || j.Deliveries[0].Copies != replays {
		t.Fatalf("got webhookDeliveries=%d deliveriesTotal=%d deliveries=%+v, want %d %d and 2 rows, the first with %d copies",
			j.WebhookDeliveries, j.DeliveriesTotal, j.Deliveries, replays+1, replays+1, replays)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Deliveries != 2*replays+1 || st.Duplicates != replays || st.Invalid != replays {
		t.Fatalf("stats: got deliveries=%d duplicates=%d invalid=%d, want %d %d %d",
			st.Deliveries, st.Duplicates, st.Invalid, 2*replays+1, replays, replays)
	}
}

// recount computes from the rows what Stats reads from its counters.
func recount(t *testing.T, db *sql.DB) store.Stats {
	t.Helper()
	ctx := context.Background()
	st := store.Stats{ByStatus: map[string]int{}, BySource: map[string]int{}}
	for _, q := range []struct {
		sql string
		add func(k string, n int)
	}{
		{`SELECT status, COUNT(*) FROM jobs GROUP BY status`, func(k string, n int) { st.ByStatus[k], st.Jobs = n, st.Jobs+n }},
		{`SELECT source, COUNT(*) FROM jobs WHERE source != '' GROUP BY source`, func(k string, n int) { st.BySource[k] = n }},
		{`SELECT 'missed', COUNT(*) FROM jobs WHERE webhook_missed = 1`, func(_ string, n int) { st.WebhooksMissed = n }},
		{`SELECT 'seq', COALESCE(MAX(seq), 0) FROM jobs`, func(_ string, n int) { st.LastSeq = int64(n) }},
		// A copy of bytes that ended a job is a duplicate; other copies
		// fared as the first arrival did.
		{`SELECT outcome, SUM(copies) FROM deliveries GROUP BY outcome`, func(k string, n int) {
			st.Deliveries += n
			switch k {
			case "accepted":
				st.Duplicates += n
			case "duplicate":
				st.Duplicates += n
			case "conflict":
				st.Duplicates, st.Conflicts = st.Duplicates+n, st.Conflicts+n
			case "invalid":
				st.Invalid += n
			}
		}},
		{`SELECT 'accepted', COUNT(*) FROM deliveries WHERE outcome = 'accepted'`, func(_ string, n int) { st.Duplicates -= n }},
	} {
		rows, err := db.QueryContext(ctx, q.sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			q.add(k, n)
		}
		rows.Close()
	}
	return st
}

func TestStatsCountersFollowEveryChange(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	start := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	now := start
	s, err := sqlite.Open(ctx, path, sqlite.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := rawDB(t, path)
	poll := func(id string, r store.PollResult) {
		t.Helper()
		if _, err := s.RecordPoll(ctx, id, r); err != nil {
			t.Fatal(err)
		}
	}
	running := func(id string, status store.Status) store.PollResult {
		return store.PollResult{Report: &store.Report{JobID: id, Status: status, Progress: 30}, Next: now.Add(time.Minute)}
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"track four", func() {
			for _, id := range []string{"p1", "p2", "p3", "p4", "p1"} {
				if _, _, err := s.Track(ctx, id, now); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"poll: pending to running", func() { poll("p1", running("p1", "running")) }},
		{"poll: running again", func() { poll("p1", running("p1", "running")) }},
		{"poll: still pending", func() { poll("p2", running("p2", "pending")) }},
		{"poll failures", func() {
			poll("p1", store.PollResult{Failed: true, Err: "502", Next: now})
			poll("p2", store.PollResult{NotFound: true, Err: "404", Next: now})
		}},
		{"webhook ends a running job", func() { deliver(t, s, report("p1", "completed")) }},
		{"replays and a conflict", func() {
			deliver(t, s, report("p1", "completed"))
			deliver(t, s, report("p1", "completed"))
			deliver(t, s, report("p1", "failed"))
		}},
		{"poll ends a job", func() { poll("p2", store.PollResult{Report: report("p2", "completed")}) }},
		{"poll of an ended job", func() { poll("p2", running("p2", "running")) }},
		{"not found ends a job", func() { poll("p4", store.PollResult{End: store.StatusNotFound, NotFound: true}) }},
		{"expire", func() {
			now = now.Add(time.Hour)
			if ids, err := s.ExpireJobs(ctx, now.Add(-30*time.Minute)); err != nil || len(ids) != 1 || ids[0] != "p3" {
				t.Fatalf("ExpireJobs: got %v, %v; want [p3]", ids, err)
			}
		}},
		{"missed webhooks", func() {
			now = now.Add(3 * time.Minute)
			if n, err := s.MarkMissedWebhooks(ctx, now, 2*time.Minute); err != nil || n != 1 {
				t.Fatalf("MarkMissedWebhooks: got %d, %v; want 1 (p2; p4 ended locally)", n, err)
			}
			if n, err := s.MarkMissedWebhooks(ctx, now, 2*time.Minute); err != nil || n != 0 {
				t.Fatalf("second MarkMissedWebhooks: got %d, %v; want 0", n, err)
			}
		}},
		{"invalid deliveries", func() {
			for range 2 {
				if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{"), ReceivedAt: now, Problem: "bad JSON"}); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"a webhook for a new job", func() { deliver(t, s, report("w1", "partial")) }},
	}
	for _, step := range steps {
		step.do()
		got, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := recount(t, db); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %s:\nstats   %+v\nrecount %+v", step.name, got, want)
		}
	}
	if j, _ := s.Job(ctx, "p2"); j.Status != store.StatusCompleted || j.Source != store.SourcePoll || !j.WebhookMissed {
		t.Fatalf("p2: got status %s source %s missed %v, want completed by poll, missed", j.Status, j.Source, j.WebhookMissed)
	}
}

// TestUpgradeBuildsCountersFromRows opens a log written by the first schema
// and checks that the upgrade counts what it holds, keeps seq growing, and
// stores replays once from then on.
func TestUpgradeBuildsCountersFromRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	schema, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, q := range []string{
		string(schema),
		`CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		`INSERT INTO schema_migrations VALUES ('migrations/0001_init.sql', 1)`,
		fmt.Sprintf(`INSERT INTO jobs (id, job_id, status, terminal, source, webhook_missed, created_at, updated_at,
			terminal_at, seq, poll_ended_at) VALUES
			(1, 'o1', 'completed', 1, 'webhook', 0, %[1]d, %[1]d, %[1]d, 1, NULL),
			(2, 'o2', 'failed',    1, 'poll',    1, %[1]d, %[1]d, %[1]d, 2, %[1]d),
			(3, 'o3', 'running',   0, '',        0, %[1]d, %[1]d, NULL, NULL, NULL),
			(4, 'o4', 'completed', 1, 'poll',    0, %[1]d, %[1]d, %[1]d, 7, %[1]d)`, base),
		fmt.Sprintf(`INSERT INTO deliveries (job_row, job_id, received_at, attempt, status, outcome, body) VALUES
			(1, 'o1', %[1]d, 1, 'completed', 'accepted', 'b1'),
			(1, 'o1', %[1]d, 1, 'completed', 'duplicate', 'b1'),
			(1, 'o1', %[1]d, 1, 'failed', 'conflict', 'b2'),
			(NULL, NULL, %[1]d, 1, '', 'invalid', 'x')`, base),
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	old.Close()

	s := openStore(t, path)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Stats{Jobs: 4, ByStatus: map[string]int{"completed": 2, "failed": 1, "running": 1},
		BySource: map[string]int{"webhook": 1, "poll": 2}, Deliveries: 4, Duplicates: 2, Conflicts: 1,
		Invalid: 1, WebhooksMissed: 1, LastSeq: 7}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("stats after upgrade:\ngot  %+v\nwant %+v", st, want)
	}
	// o4's end was seen by a poll and no webhook came: the first sweep
	// checks it; o2, already flagged, is not counted again.
	if n, err := s.MarkMissedWebhooks(ctx, time.Now(), time.Minute); err != nil || n != 1 {
		t.Fatalf("first sweep after upgrade: got %d, %v; want 1", n, err)
	}
	for range 3 { // old rows carry no hash: these bytes are stored once more, then counted
		if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("b1"), ReceivedAt: time.Now(),
			Report: &store.Report{JobID: "o1", Status: "completed"}}); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, s, report("n1", "completed"))
	j, err := s.JobWithDeliveries(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Deliveries) != 4 || j.Deliveries[3].Copies != 3 || j.DeliveriesTotal != 6 {
		t.Fatalf("o1 after replays: got %d rows, last %+v, total %d; want 4 rows, the last with 3 copies, total 6",
			len(j.Deliveries), j.Deliveries[len(j.Deliveries)-1], j.DeliveriesTotal)
	}
	if j, _ := s.Job(ctx, "n1"); j.Seq != 8 {
		t.Fatalf("first job ended after upgrade: got seq %d, want 8", j.Seq)
	}
	st, _ = s.Stats(ctx)
	if got := recount(t, rawDB(t, path)); fmt.Sprint(st) != fmt.Sprint(got) {
		t.Fatalf("after upgrade and writes:\nstats   %+v\nrecount %+v", st, got)
	}
}

// TestListJobsFiltersMatchAScanWhenTheClockStepsBack pages through every
// filter and compares the result with the whole log filtered by hand, on a
// log written with a clock that steps back now and then: the Since filter
// is an id range here, which holds only because created_at never decreases
// in id order. storetest checks the filters on the wall clock.
func TestListJobsFiltersMatchAScanWhenTheClockStepsBack(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	now := start
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	statuses := []store.Status{"completed", "failed", "partial", "pending", "running"}
	for i := range 80 {
		now = start.Add(time.Duration(i) * time.Minute)
		if i%7 == 3 {
			now = now.Add(-10 * time.Minute) // the clock stepped back
		}
		id := fmt.Sprintf("j%02d", i)
		switch st := statuses[i%len(statuses)]; st {
		case "pending", "running":
			if _, _, err := s.Track(ctx, id, now); err != nil {
				t.Fatal(err)
			}
			if st == "running" {
				if _, err := s.RecordPoll(ctx, id, store.PollResult{Report: &store.Report{JobID: id, Status: st}, Next: now}); err != nil {
					t.Fatal(err)
				}
			}
		default:
			deliver(t, s, report(id, st))
		}
	}
	all, _, err := s.ListJobs(ctx, store.Filter{Limit: store.MaxLimit})
	if err != nil || len(all) != 80 {
		t.Fatalf("all: got %d jobs, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].CreatedAt.After(all[i-1].CreatedAt) {
			t.Fatalf("createdAt decreases from %s to %s in insertion order", all[i].JobID, all[i-1].JobID)
		}
	}
	storetest.PagesMatchAScan(t, s, all, []store.Filter{
		{}, {Statuses: []store.Status{"failed"}}, {Statuses: []store.Status{"pending", "completed", "completed"}},
		{Since: start.Add(30 * time.Minute)}, {Since: start.Add(33*time.Minute + time.Second)},
		{Statuses: []store.Status{"running", "partial"}, Since: start.Add(52 * time.Minute)},
		{Since: start.Add(-time.Hour)}, {Since: start.Add(79 * time.Minute)}, {Since: start.Add(80 * time.Minute)},
	})
}
