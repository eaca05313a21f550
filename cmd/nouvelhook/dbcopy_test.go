package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// copyLog is the log db copy is tried on: jobs ended by webhooks and by
// polls, a replayed delivery, a conflicting one, an invalid one, a missed
// webhook, an expired job, tracked jobs with a schedule and failure counts,
// and the first jobs pruned away so that the feed starts past a gap.
type copyLog struct {
	ids []string // every job id used, pruned ones included
}

func buildCopyLog(t *testing.T, st store.Store) copyLog {
	t.Helper()
	ctx := context.Background()
	var log copyLog
	webhook := func(id string, status store.Status, attempt int) store.Outcome {
		t.Helper()
		body := event(id, string(status))
		out, err := st.RecordWebhook(ctx, store.WebhookDelivery{
			Body: body, ReceivedAt: time.Now(), Attempt: attempt, JobID: id,
			Report: &store.Report{JobID: id, Status: status, TotalProjects: 1, CompletedProjects: 1,
				Projects: []store.Project{{ProjectID: "p-" + id, Title: "Ad", Status: store.StatusCompleted,
					VideoURL: "https://cdn.example/" + id + ".mp4"}}},
		})
		if err != nil {
			t.Fatalf("RecordWebhook %s: %v", id, err)
		}
		return out
	}
	poll := func(id string, r store.PollResult) {
		t.Helper()
		if _, err := st.RecordPoll(ctx, id, r); err != nil {
			t.Fatalf("RecordPoll %s: %v", id, err)
		}
	}
	track := func(id string, first time.Time) {
		t.Helper()
		if _, _, err := st.Track(ctx, id, first); err != nil {
			t.Fatalf("Track %s: %v", id, err)
		}
		log.ids = append(log.ids, id)
	}

	// Two jobs that end first, to be pruned.
	for _, id := range []string{"old-1", "old-2"} {
		webhook(id, store.StatusCompleted, 1)
		log.ids = append(log.ids, id)
	}
	if n, err := st.Prune(ctx, time.Now().Add(time.Second), 2); err != nil || n != 2 {
		t.Fatalf("Prune: got %d, %v; want 2 jobs pruned", n, err)
	}
	for i := range 5 {
		id := fmt.Sprintf("hook-%d", i)
		webhook(id, store.StatusCompleted, 1)
		log.ids = append(log.ids, id)
	}
	if out := webhook("hook-0", store.StatusCompleted, 1); out != store.OutcomeDuplicate {
		t.Fatalf("replay: got %s, want duplicate", out)
	}
	webhook("hook-0", store.StatusCompleted, 2) // the same bytes again: a third copy
	if out := webhook("hook-1", store.StatusFailed, 1); out != store.OutcomeConflict {
		t.Fatalf("conflicting report: got %s, want conflict", out)
	}
	if _, err := st.RecordWebhook(ctx, store.WebhookDelivery{
		Body: []byte(`{"jobId":"broken`), ReceivedAt: time.Now(), Attempt: 1, Problem: "bad JSON",
	}); err != nil {
		t.Fatalf("invalid delivery: %v", err)
	}

	// A job that expires, before the tracked ones exist.
	track("expires", time.Now())
	exp, err := st.Job(ctx, "expires")
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := st.ExpireJobs(ctx, exp.CreatedAt); err != nil || len(ids) != 1 {
		t.Fatalf("ExpireJobs: got %v, %v; want the one job", ids, err)
	}

	// Polls that end jobs: one whose webhook never comes (missed), one whose
	// webhook comes after.
	for _, id := range []string{"polled-missed", "polled-then-hook"} {
		track(id, time.Now())
		poll(id, store.PollResult{Report: &store.Report{JobID: id, Status: store.StatusRunning, Progress: 40, Stage: "render"},
			Next: time.Now().Add(10 * time.Second)})
		poll(id, store.PollResult{Report: &store.Report{JobID: id, Status: store.StatusPartial, TotalProjects: 2,
			CompletedProjects: 1, FailedProjects: 1}})
	}
	webhook("polled-then-hook", store.StatusPartial, 1)
	if n, err := st.MarkMissedWebhooks(ctx, time.Now().Add(time.Hour), time.Minute); err != nil || n != 1 {
		t.Fatalf("MarkMissedWebhooks: got %d, %v; want 1", n, err)
	}

	// Jobs still tracked, each with its own schedule state.
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	track("running", base)
	poll("running", store.PollResult{Report: &store.Report{JobID: "running", Status: store.StatusRunning, Progress: 70, Stage: "voice"},
		Next: base.Add(15 * time.Second)})
	track("failing", base.Add(time.Second))
	poll("failing", store.PollResult{Err: "nouvel: 502 Bad Gateway", Failed: true, Next: base.Add(20 * time.Second)})
	poll("failing", store.PollResult{Err: "nouvel: 503", Failed: true, Next: base.Add(40 * time.Second)})
	track("vanishing", base.Add(2*time.Second))
	poll("vanishing", store.PollResult{Err: "nouvel: 404", NotFound: true, Next: base.Add(30 * time.Second)})
	track("fresh", base.Add(3*time.Second))
	log.ids = append(log.ids, "never-heard-of")
	return log
}

// checkCopyLog fails the test unless the view of a log from buildCopyLog
// holds what a copy could lose, so that comparing two views means something.
func checkCopyLog(t *testing.T, v logView) {
	t.Helper()
	due := map[string]store.PollTarget{}
	for _, p := range v.Due {
		due[p.JobID] = p
	}
	var copies []int
	for _, d := range v.Jobs["hook-0"].Deliveries {
		copies = append(copies, d.Copies)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"pruned and unknown jobs", v.Missing, []string{"old-1", "old-2", "never-heard-of"}},
		{"first event's seq", v.Events[0].Seq, int64(3)},
		{"last seq", v.Last, int64(10)},
		{"hook-0's delivery copies", copies, []int{3}},
		{"due polls", len(v.Due), 4},
		{"missed webhooks", v.Stats.WebhooksMissed, 1},
		{"invalid deliveries", v.Stats.Invalid, 1},
		{"running job's steps", due["running"].Step, 1},
		{"failing job's failures", due["failing"].Failures, 2},
		{"vanishing job's 404s", due["vanishing"].NotFound, 1},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Fatalf("the log to copy: %s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// logView is everything the store API answers about a log, for comparing
// two logs.
type logView struct {
	Jobs    map[string]store.Job
	Missing []string
	Events  []store.Job
	Last    int64
	Stats   store.Stats
	Due     []store.PollTarget
	Next    time.Time
	Pages   [][]store.Job
}

func viewLog(t *testing.T, st store.Store, ids []string) logView {
	t.Helper()
	ctx := context.Background()
	v := logView{Jobs: map[string]store.Job{}}
	for _, id := range ids {
		j, err := st.JobWithDeliveries(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			v.Missing = append(v.Missing, id)
			continue
		}
		if err != nil {
			t.Fatalf("JobWithDeliveries %s: %v", id, err)
		}
		plain, err := st.Job(ctx, id)
		if err != nil {
			t.Fatalf("Job %s: %v", id, err)
		}
		if plain.Deliveries, plain.DeliveriesTotal = j.Deliveries, j.DeliveriesTotal; !reflect.DeepEqual(plain, j) {
			t.Fatalf("Job %s differs from JobWithDeliveries: %+v vs %+v", id, plain, j)
		}
		v.Jobs[id] = j
	}
	var err error
	if v.Events, v.Last, err = st.Events(ctx, 0, store.MaxLimit); err != nil {
		t.Fatal(err)
	}
	if v.Stats, err = st.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if v.Due, err = st.DuePolls(ctx, time.Now().Add(24*time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	if v.Next, _, err = st.NextPollAt(ctx); err != nil {
		t.Fatal(err)
	}
	cursor := ""
	for {
		page, next, err := st.ListJobs(ctx, store.Filter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		v.Pages = append(v.Pages, page)
		if next == "" {
			break
		}
		cursor = next
	}
	return v
}

// sameLogView fails the test where got differs from want.
func sameLogView(t *testing.T, what string, got, want logView) {
	t.Helper()
	for id, w := range want.Jobs {
		if g := got.Jobs[id]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: job %s:\n got %+v\nwant %+v", what, id, g, w)
		}
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"jobs", len(got.Jobs), len(want.Jobs)},
		{"missing jobs", got.Missing, want.Missing},
		{"events", got.Events, want.Events},
		{"last seq", got.Last, want.Last},
		{"stats", got.Stats, want.Stats},
		{"due polls", got.Due, want.Due},
		{"next poll", got.Next, want.Next},
		{"list pages", got.Pages, want.Pages},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s: %s:\n got %+v\nwant %+v", what, f.name, f.got, f.want)
		}
	}
}

// openSQLite opens a SQLite log, closed when the test ends.
func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// checkCopyGoesOn wants a copy to carry on where its source stopped: the
// missed-webhook checks already made are not made again, and a new job that
// ends gets the seq after the copied last one.
func checkCopyGoesOn(t *testing.T, what string, st store.Store, last int64) {
	t.Helper()
	if n, err := st.MarkMissedWebhooks(context.Background(), time.Now().Add(2*time.Hour), time.Minute); err != nil || n != 0 {
		t.Errorf("%s: MarkMissedWebhooks: got %d, %v; want 0, every check made before the copy", what, n, err)
	}
	body := event("after-copy", "completed")
	if _, err := st.RecordWebhook(context.Background(), store.WebhookDelivery{
		Body: body, ReceivedAt: time.Now(), Attempt: 1, JobID: "after-copy",
		Report: &store.Report{JobID: "after-copy", Status: store.StatusCompleted},
	}); err != nil {
		t.Fatalf("%s: a webhook after the copy: %v", what, err)
	}
	j, err := st.Job(context.Background(), "after-copy")
	if err != nil || j.Seq != last+1 {
		t.Errorf("%s: a job ending after the copy: got seq %d, %v; want %d", what, j.Seq, err, last+1)
	}
}

// db copy from SQLite to SQLite, while the source is held open as serve
// holds it, gives a log that answers every read as the source does; a
// second copy into it is refused and leaves it as it was.
func TestDBCopySQLiteToSQLite(t *testing.T) {
	dir := t.TempDir()
	srcPath, dstPath := filepath.Join(dir, "src.db"), filepath.Join(dir, "sub", "dst.db")
	src := openSQLite(t, srcPath) // held open, with its lock, during the copy
	log := buildCopyLog(t, src)
	// Every ended job gets a forward, as if forwarding had been on.
	forwards, err := src.ReplayForwards(context.Background(), time.Now(), 0)
	if err != nil || forwards == 0 {
		t.Fatalf("queue forwards: %d, %v", forwards, err)
	}
	want := viewLog(t, src, log.ids)
	checkCopyLog(t, want)

	out, errOut, err := runCLI(context.Background(), nil, "", "db", "copy", srcPath, dstPath)
	wantOut := fmt.Sprintf("copied %s to %s: %d jobs, %d deliveries, %d forwards, last seq %d; counts checked\n",
		srcPath, dstPath, want.Stats.Jobs, 8, forwards, want.Last)
	if err != nil || out != wantOut {
		t.Fatalf("db copy: got %q, %q, %v; want %q", out, errOut, err, wantOut)
	}
	dst := openSQLite(t, dstPath)
	sameLogView(t, "the copy", viewLog(t, dst, log.ids), want)
	dst.Close()

	// A second copy into the same file is refused, and changes nothing.
	out, errOut, err = runCLI(context.Background(), nil, "", "db", "copy", srcPath, dstPath)
	if err == nil || out != "" || !strings.Contains(err.Error(), "not empty") || strings.Contains(err.Error(), "\n") {
		t.Errorf("copy into a log that is not empty: got %q, %q, %v; want one line saying it is not empty", out, errOut, err)
	}
	dst = openSQLite(t, dstPath)
	sameLogView(t, "the copy after a refused copy", viewLog(t, dst, log.ids), want)
	checkCopyGoesOn(t, "the copy", dst, want.Last)
}

// db copy refuses what it cannot copy with one line, and leaves no file
// behind when it created one.
func TestDBCopyRefuses(t *testing.T) {
	dir := t.TempDir()
	notALog := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notALog, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src.db")
	st := openSQLite(t, src)
	st.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no DST", []string{src}, "missing SRC and DST"},
		{"same log", []string{src, src}, "same log"},
		{"missing SRC", []string{filepath.Join(dir, "none.db"), filepath.Join(dir, "new1.db")}, "does not exist"},
		{"SRC not a log", []string{notALog, filepath.Join(dir, "new2.db")}, "not a SQLite database"},
		{"bad DST URL", []string{src, "mysql://u:hunter22@h/db"}, "DST"},
	}
	for _, tt := range tests {
		_, _, err := runCLI(context.Background(), nil, "", append([]string{"db", "copy"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") ||
			strings.Contains(err.Error(), "hunter22") {
			t.Errorf("%s: got %v; want one line with %q and no password", tt.name, err, tt.want)
		}
	}
	for _, name := range []string{"new1.db", "new2.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: got %v; want no file left by a refused copy", name, err)
		}
	}
}

// A round trip SQLite → Postgres → SQLite gives a log that answers every
// read as the original does, with the password of the URL in no output; a
// copy into Postgres that is not empty is refused.
func TestDBCopyRoundTripThroughPostgres(t *testing.T) {
	const password = "pw-Zq81-secret"
	pgURL := pgSchemaURL(t, password)
	dir := t.TempDir()
	srcPath, backPath := filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	src := openSQLite(t, srcPath)
	log := buildCopyLog(t, src)
	want := viewLog(t, src, log.ids)
	checkCopyLog(t, want)
	shownURL := strings.Replace(pgURL, password, "xxxxx", 1)

	var outputs []string
	copyCLI := func(from, to string) error {
		t.Helper()
		out, errOut, err := runCLI(context.Background(), nil, "", "db", "copy", from, to)
		outputs = append(outputs, out, errOut)
		if err != nil {
			outputs = append(outputs, err.Error())
		}
		return err
	}
	if err := copyCLI(srcPath, pgURL); err != nil {
		t.Fatalf("copy to Postgres: %v", err)
	}
	if !strings.Contains(outputs[0], "to "+shownURL+": ") {
		t.Errorf("copy to Postgres: got %q; want it to name %s", outputs[0], shownURL)
	}
	if err := copyCLI(pgURL, backPath); err != nil {
		t.Fatalf("copy back from Postgres: %v", err)
	}
	back := openSQLite(t, backPath)
	sameLogView(t, "SQLite → Postgres → SQLite", viewLog(t, back, log.ids), want)

	// Postgres now holds a log: a second copy into it is refused.
	err := copyCLI(srcPath, pgURL)
	if err == nil || !strings.Contains(err.Error(), "not empty") || strings.Contains(err.Error(), "\n") {
		t.Errorf("copy into Postgres that is not empty: got %v; want one line saying it is not empty", err)
	}
	for _, o := range outputs {
		if strings.Contains(o, password) {
			t.Errorf("output shows the password: %q", o)
		}
	}

	// Both copies go on where the source stopped.
	checkCopyGoesOn(t, "the SQLite copy", back, want.Last)
	pg := openPostgres(t, pgURL)
	sameLogView(t, "the Postgres copy", viewLog(t, pg, log.ids), want)
	checkCopyGoesOn(t, "the Postgres copy", pg, want.Last)
}

// openPostgres opens a Postgres log, closed when the test ends.
func openPostgres(t *testing.T, dbURL string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), dbURL, postgres.Options{})
	if err != nil {
		t.Fatalf("open Postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// failingSource is a source that breaks after its first row.
type failingSource struct{ err error }

func (f failingSource) Export(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
	if err := fn(store.Record{Job: &store.JobRow{ID: 1, JobID: "one", Status: store.StatusPending, Projects: "[]"}}); err != nil {
		return store.LogCounts{}, err
	}
	return store.LogCounts{}, f.err
}

// A copy that fails into a SQLite file it created leaves no file behind, so
// it can simply be run again; into a file that existed, it leaves the file.
func TestDBCopyFailureLeavesNoNewFile(t *testing.T) {
	dir := t.TempDir()
	broken := errors.New("the source went away")
	dst := filepath.Join(dir, "new.db")
	if _, err := copyInto(context.Background(), failingSource{broken}, dst); !errors.Is(err, broken) {
		t.Fatalf("copyInto from a failing source: got %v, want its error", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("after a failed copy into a new file: got %v left, want nothing", left)
	}
	openSQLite(t, dst).Close() // an empty log that was there before
	if _, err := copyInto(context.Background(), failingSource{broken}, dst); !errors.Is(err, broken) {
		t.Fatalf("copyInto an existing empty log from a failing source: got %v, want its error", err)
	}
	st := openSQLite(t, dst)
	if stats, err := st.Stats(context.Background()); err != nil || stats.Jobs != 0 {
		t.Errorf("the existing log after a failed copy: got %+v, %v; want it there and empty", stats, err)
	}
}

// A SQLite log holding a delivery stored before bodies were hashed copies to
// Postgres with the hash still NULL where the schema allows it, and is
// otherwise refused with a line that says why, leaving Postgres empty.
func TestDBCopyUnhashedDeliveryToPostgres(t *testing.T) {
	pgSchemaURL(t, "") // skips without Postgres
	srcPath := filepath.Join(t.TempDir(), "old.db")
	src := openSQLite(t, srcPath)
	log := buildCopyLog(t, src)
	src.Close()
	db, err := sql.Open("sqlite", "file:"+srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE deliveries SET body_hash = NULL, last_received_at = NULL
		WHERE id = (SELECT MIN(id) FROM deliveries)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	src = openSQLite(t, srcPath)
	want := viewLog(t, src, log.ids)
	src.Close()

	t.Run("the schema as it is", func(t *testing.T) {
		pgURL := pgSchemaURL(t, "")
		_, _, err := runCLI(context.Background(), nil, "", "db", "copy", srcPath, pgURL)
		pg := openPostgres(t, pgURL)
		if err == nil {
			sameLogView(t, "the Postgres copy with an unhashed delivery", viewLog(t, pg, log.ids), want)
			return
		}
		if !strings.Contains(err.Error(), "stored before nouvelhook hashed delivery bodies") {
			t.Fatalf("copy of an unhashed delivery: got %v; want success, or a line that says why not", err)
		}
		if stats, err := pg.Stats(context.Background()); err != nil || stats.Jobs != 0 || stats.LastSeq != 0 {
			t.Errorf("Postgres after a refused copy: got %+v, %v; want it empty", stats, err)
		}
	})
	t.Run("a schema that allows no hash", func(t *testing.T) {
		pgURL := pgSchemaURL(t, "")
		pg := openPostgres(t, pgURL)
		conn, err := pgx.Connect(context.Background(), pgURL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(context.Background(), `ALTER TABLE deliveries ALTER COLUMN body_hash DROP NOT NULL`)
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := runCLI(context.Background(), nil, "", "db", "copy", srcPath, pgURL); err != nil {
			t.Fatalf("copy of an unhashed delivery: %v", err)
		}
		sameLogView(t, "the Postgres copy with an unhashed delivery", viewLog(t, pg, log.ids), want)
	})
}
