package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
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

func TestRecordWebhookFirstReportWins(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "db", "nh.db"))
	for i, want := range []store.Outcome{store.OutcomeAccepted, store.OutcomeDuplicate, store.OutcomeDuplicate} {
		if got := deliver(t, s, report("job-1", "completed")); got != want {
			t.Fatalf("delivery %d: got %s, want %s", i+1, got, want)
		}
	}
	if got := deliver(t, s, report("job-1", "failed")); got != store.OutcomeConflict {
		t.Fatalf("disagreeing delivery: got %s, want conflict", got)
	}
	j, err := s.JobWithDeliveries(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != "completed" || j.WebhookDeliveries != 4 || j.Seq != 1 || j.Source != "webhook" || !j.Terminal {
		t.Fatalf("got status=%s deliveries=%d seq=%d source=%s terminal=%v, want completed 4 1 webhook true",
			j.Status, j.WebhookDeliveries, j.Seq, j.Source, j.Terminal)
	}
	// The three equal deliveries are one row with three copies.
	if len(j.Deliveries) != 2 || j.Deliveries[0].Duplicate || j.Deliveries[0].Copies != 3 ||
		!j.Deliveries[1].Duplicate || j.Deliveries[1].Status != "failed" || j.Deliveries[1].Copies != 1 || j.DeliveriesTotal != 4 {
		t.Fatalf("got deliveries %+v total %d, want [accepted x3, failed duplicate x1] total 4", j.Deliveries, j.DeliveriesTotal)
	}
	if len(j.Projects) != 1 || j.Projects[0].VideoURL != "https://v/1.mp4" {
		t.Fatalf("got projects %+v", j.Projects)
	}
}

func TestInvalidDeliveryKeptButNoJob(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	out, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{bad`), ReceivedAt: time.Now(), Problem: "bad JSON"})
	if err != nil || out != store.OutcomeInvalid {
		t.Fatalf("got %s, %v; want invalid, nil", out, err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs != 0 || st.Invalid != 1 || st.Deliveries != 1 {
		t.Fatalf("got jobs=%d invalid=%d deliveries=%d, want 0 1 1", st.Jobs, st.Invalid, st.Deliveries)
	}
}

func TestTrackThenWebhookEndsTrackedJob(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	j, created, err := s.Track(ctx, "clx8k9v2t0001qz8x7r4e5w6m", time.Now())
	if err != nil || !created || j.Status != "pending" || j.Terminal {
		t.Fatalf("Track: got %+v created=%v err=%v", j, created, err)
	}
	if _, created, _ := s.Track(ctx, "clx8k9v2t0001qz8x7r4e5w6m", time.Now()); created {
		t.Fatal("second Track: got created, want known")
	}
	if _, _, err := s.Track(ctx, "bad id!", time.Now()); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Track(bad id): got %v, want ErrInvalid", err)
	}
	if got := deliver(t, s, report("clx8k9v2t0001qz8x7r4e5w6m", "partial")); got != store.OutcomeAccepted {
		t.Fatalf("got %s, want accepted", got)
	}
	j, _ = s.Job(ctx, "clx8k9v2t0001qz8x7r4e5w6m")
	if j.Status != "partial" || j.Seq != 1 || j.TerminalAt == nil {
		t.Fatalf("got %+v", j)
	}
}

func TestListJobsPagesNewestFirst(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	for i := 0; i < 7; i++ {
		status := store.StatusCompleted
		if i%2 == 1 {
			status = "failed"
		}
		deliver(t, s, report(fmt.Sprintf("job-%d", i), status))
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("still paging after %d pages of 3 for 7 jobs: the cursor does not advance", page)
		}
		jobs, next, err := s.ListJobs(ctx, store.Filter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got = append(got, j.JobID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := fmt.Sprint([]string{"job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"})
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	failed, _, err := s.ListJobs(ctx, store.Filter{Limit: 10, Statuses: []store.Status{"failed"}})
	if err != nil || len(failed) != 3 {
		t.Fatalf("status filter: got %d jobs, %v; want 3", len(failed), err)
	}
	for _, since := range []time.Time{time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), time.Now().Add(time.Hour)} {
		if jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: 10, Since: since}); err != nil || len(jobs) != 0 {
			t.Errorf("since %s: got %d jobs, %v; want none", since, len(jobs), err)
		}
	}
	if jobs, _, _ := s.ListJobs(ctx, store.Filter{Limit: 10, Since: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}); len(jobs) != 7 {
		t.Errorf("since year 1000: got %d jobs, want 7", len(jobs))
	}
	for _, f := range []store.Filter{{Limit: 0}, {Limit: 501}, {Limit: 1, Cursor: "x"}, {Limit: 1, Statuses: []store.Status{"done"}}} {
		if _, _, err := s.ListJobs(ctx, f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListJobs(%+v): got %v, want ErrInvalid", f, err)
		}
	}
}

func TestEventsOrderedAndWaitWakes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	deliver(t, s, report("a", "completed"))
	deliver(t, s, report("b", "failed"))
	events, last, err := s.Events(ctx, 0, 10)
	if err != nil || len(events) != 2 || events[0].JobID != "a" || events[1].Seq != 2 || last != 2 {
		t.Fatalf("got %d events last=%d err=%v", len(events), last, err)
	}
	if events, last, _ := s.Events(ctx, last, 10); len(events) != 0 || last != 2 {
		t.Fatalf("after=last: got %d events last=%d, want 0 2", len(events), last)
	}

	type result struct {
		j   store.Job
		err error
	}
	got := make(chan result, 1)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		j, err := s.WaitJob(wctx, "c")
		got <- result{j, err}
	}()
	deliver(t, s, report("c", "completed"))
	r := <-got
	if r.err != nil || !r.j.Terminal || r.j.Seq != 3 {
		t.Fatalf("WaitJob: got %+v, %v", r.j, r.err)
	}
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

func TestConcurrentDeliveriesAllStored(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deliver(t, s, report(fmt.Sprintf("job-%03d", i), "completed"))
		}()
	}
	wg.Wait()
	_, last, err := s.Events(ctx, 0, 500)
	if err != nil || last != 200 {
		t.Fatalf("got last seq %d, %v; want 200", last, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestStalePollDoesNotReopenAnEndedJob(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	if _, _, err := s.Track(ctx, "stale", time.Now()); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, report("stale", "completed"))
	before, _ := s.Job(ctx, "stale")
	_, err := s.RecordPoll(ctx, "stale", store.PollResult{
		Report: &store.Report{JobID: "stale", Status: "running", Progress: 40, Stage: "rendering"},
		Next:   time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := s.Job(ctx, "stale")
	if after.Status != "completed" || !after.Terminal || after.Seq != before.Seq || after.Progress != 100 {
		t.Fatalf("got status=%s terminal=%v seq=%d progress=%d, want the ended job unchanged (completed, seq %d, 100)",
			after.Status, after.Terminal, after.Seq, after.Progress, before.Seq)
	}
	if due, _ := s.DuePolls(ctx, time.Now().Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("got %d due polls, want none for an ended job", len(due))
	}
}

func TestStatsCounts(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	now := start
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deliver(t, s, report("w1", "completed"))
	deliver(t, s, report("w1", "completed")) // duplicate
	deliver(t, s, report("w1", "failed"))    // conflict
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{"), ReceivedAt: now, Problem: "bad JSON"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2"} {
		if _, _, err := s.Track(ctx, id, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordPoll(ctx, "p1", store.PollResult{Report: report("p1", "partial")}); err != nil {
		t.Fatal(err)
	}
	now = start.Add(3 * time.Minute)
	if n, err := s.MarkMissedWebhooks(ctx, now, 2*time.Minute); err != nil || n != 1 {
		t.Fatalf("MarkMissedWebhooks: got %d, %v; want 1", n, err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Stats{Jobs: 3, ByStatus: map[string]int{"completed": 1, "partial": 1, "pending": 1},
		BySource: map[string]int{"webhook": 1, "poll": 1}, Deliveries: 4, Duplicates: 2, Conflicts: 1,
		Invalid: 1, WebhooksMissed: 1, LastSeq: 2}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("got  %+v\nwant %+v", st, want)
	}
}

// rawDB opens the store's file directly, to look at what is stored.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

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

func TestJobWithDeliveriesListsTheLast100(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "nh.db"))
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	const distinct = 150
	for i := range distinct {
		for range 1 + i%2 { // odd ones twice
			_, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: fmt.Appendf(nil, `{"n":%d}`, i),
				ReceivedAt: start.Add(time.Duration(i) * time.Second), Attempt: i + 1, Report: report("many", "completed")})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	j, err := s.JobWithDeliveries(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Deliveries) != store.MaxDeliveries {
		t.Fatalf("got %d deliveries listed, want %d", len(j.Deliveries), store.MaxDeliveries)
	}
	if want := distinct + distinct/2; j.DeliveriesTotal != want {
		t.Fatalf("got deliveriesTotal %d, want %d", j.DeliveriesTotal, want)
	}
	for k, d := range j.Deliveries {
		i := distinct - store.MaxDeliveries + k // the last 100, oldest first
		if d.Attempt != i+1 || !d.ReceivedAt.Equal(start.Add(time.Duration(i)*time.Second)) || d.Copies != 1+i%2 {
			t.Fatalf("delivery %d: got %+v, want attempt %d with %d copies", k, d, i+1, 1+i%2)
		}
	}
	// A list answer does not carry the total.
	b, _ := json.Marshal(store.Job{})
	if strings.Contains(string(b), "deliveriesTotal") {
		t.Fatalf("a job without deliveries marshals deliveriesTotal: %s", b)
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

// TestListJobsFiltersMatchAScan pages through every filter and compares the
// result with the whole log filtered by hand, on a log written with a clock
// that steps back now and then.
func TestListJobsFiltersMatchAScan(t *testing.T) {
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
	for _, f := range []store.Filter{
		{}, {Statuses: []store.Status{"failed"}}, {Statuses: []store.Status{"pending", "completed", "completed"}},
		{Since: start.Add(30 * time.Minute)}, {Since: start.Add(33*time.Minute + time.Second)},
		{Statuses: []store.Status{"running", "partial"}, Since: start.Add(52 * time.Minute)},
		{Since: start.Add(-time.Hour)}, {Since: start.Add(79 * time.Minute)}, {Since: start.Add(80 * time.Minute)},
	} {
		var want []string
		for _, j := range all {
			if (len(f.Statuses) == 0 || slices.Contains(f.Statuses, j.Status)) && !j.CreatedAt.Before(f.Since) {
				want = append(want, j.JobID)
			}
		}
		var got []string
		f.Limit = 7
		for page := 0; ; page++ {
			if page > 20 {
				t.Fatalf("%+v: the cursor does not advance", f)
			}
			jobs, next, err := s.ListJobs(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				got = append(got, j.JobID)
			}
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("statuses %v since %s:\ngot  %v\nwant %v", f.Statuses, f.Since.Format(time.TimeOnly), got, want)
		}
	}
}
