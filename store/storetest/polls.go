package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func errorsIsNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// testSchedulePersistsThroughPolls: the schedule state a poll writes is
// what DuePolls and NextPollAt read back.
func testSchedulePersistsThroughPolls(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, ok, err := s.NextPollAt(ctx); err != nil || ok {
		t.Fatalf("NextPollAt on an empty log: got ok=%v, %v; want none", ok, err)
	}
	base := time.Now().Truncate(time.Millisecond)
	for i, id := range []string{"a", "b", "c"} {
		if _, _, err := s.Track(ctx, id, base.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if next, ok, err := s.NextPollAt(ctx); err != nil || !ok || !next.Equal(base) {
		t.Fatalf("NextPollAt: got %s, %v, %v; want %s", next, ok, err, base)
	}
	due, err := s.DuePolls(ctx, base.Add(time.Second), 10)
	if err != nil || len(due) != 2 || due[0].JobID != "a" || due[1].JobID != "b" {
		t.Fatalf("DuePolls at +1s: got %+v, %v; want a, b, longest overdue first", due, err)
	}
	if d, _ := s.DuePolls(ctx, base.Add(time.Hour), 1); len(d) != 1 || d[0].JobID != "a" {
		t.Fatalf("DuePolls limit 1: got %+v, want a", d)
	}
	// a: running, then a server failure; b: a 404; c: two running answers.
	polls := []struct {
		id string
		r  store.PollResult
	}{
		{"a", store.PollResult{Report: &store.Report{JobID: "a", Status: store.StatusRunning, Progress: 40, Stage: "rendering"}, Next: base.Add(10 * time.Second)}},
		{"a", store.PollResult{Failed: true, Err: "Nouvel answered 502", Next: base.Add(20 * time.Second)}},
		{"b", store.PollResult{NotFound: true, Err: "Nouvel answered 404 (1 in a row)", Next: base.Add(5 * time.Second)}},
		{"c", store.PollResult{Report: &store.Report{JobID: "c", Status: store.StatusRunning}, Next: base.Add(30 * time.Second)}},
		{"c", store.PollResult{Report: &store.Report{JobID: "c", Status: store.StatusRunning, Progress: 70}, Next: base.Add(40 * time.Second)}},
	}
	for _, p := range polls {
		if out, err := s.RecordPoll(ctx, p.id, p.r); err != nil || out != "" {
			t.Fatalf("RecordPoll(%s): got %q, %v; want no outcome", p.id, out, err)
		}
	}
	due, err = s.DuePolls(ctx, base.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, p := range due {
		got += fmt.Sprintf("%s next=+%s step=%d failures=%d notfound=%d; ", p.JobID, p.NextPollAt.Sub(base),
			p.Step, p.Failures, p.NotFound)
	}
	want := "b next=+5s step=0 failures=0 notfound=1; a next=+20s step=1 failures=1 notfound=0; c next=+40s step=2 failures=0 notfound=0; "
	if got != want {
		t.Fatalf("schedule after polls:\ngot  %s\nwant %s", got, want)
	}
	if next, ok, err := s.NextPollAt(ctx); err != nil || !ok || !next.Equal(base.Add(5*time.Second)) {
		t.Fatalf("NextPollAt after polls: got %s, %v, %v; want +5s", next, ok, err)
	}
	a, err := s.Job(ctx, "a")
	if err != nil || a.Status != store.StatusRunning || a.Progress != 40 || a.Stage != "rendering" ||
		a.PollCount != 2 || a.LastError != "Nouvel answered 502" {
		t.Fatalf("job a: got %+v, %v; want running 40%% rendering, 2 polls, the 502 as last error", a, err)
	}
	// A good answer resets the failure counts and clears the error.
	if _, err := s.RecordPoll(ctx, "b", store.PollResult{Report: &store.Report{JobID: "b", Status: store.StatusRunning}, Next: base.Add(50 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	due, _ = s.DuePolls(ctx, base.Add(time.Hour), 10)
	for _, p := range due {
		if p.JobID == "b" && (p.NotFound != 0 || p.Failures != 0 || p.Step != 1) {
			t.Errorf("b after a good answer: got %+v, want counts reset, step 1", p)
		}
	}
	if b, _ := s.Job(ctx, "b"); b.LastError != "" {
		t.Errorf("b after a good answer: lastError %q, want none", b.LastError)
	}
	// Ended jobs leave the schedule.
	deliver(t, s, report("a", "completed"))
	deliver(t, s, report("b", "completed"))
	deliver(t, s, report("c", "completed"))
	if due, err := s.DuePolls(ctx, base.Add(time.Hour), 10); err != nil || len(due) != 0 {
		t.Fatalf("DuePolls with every job ended: got %+v, %v", due, err)
	}
	if _, ok, err := s.NextPollAt(ctx); err != nil || ok {
		t.Fatalf("NextPollAt with every job ended: got ok=%v, %v; want none", ok, err)
	}
}

func testStalePollDoesNotReopenAnEndedJob(t *testing.T, s store.Store) {
	ctx := context.Background()
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
	// A poll of a job the log does not hold changes nothing.
	if _, err := s.RecordPoll(ctx, "ghost", store.PollResult{Report: &store.Report{JobID: "ghost", Status: "running"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Job(ctx, "ghost"); !errorsIsNotFound(err) {
		t.Fatalf("Job(ghost) after a poll: got %v, want ErrNotFound", err)
	}
}

// testPollEndsAJobOnce: a terminal poll ends the job with source poll; a
// webhook after it is a duplicate, and End ends a job locally.
func testPollEndsAJobOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"p", "gone"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	out, err := s.RecordPoll(ctx, "p", store.PollResult{Report: report("p", "completed")})
	if err != nil || out != store.OutcomeAccepted {
		t.Fatalf("terminal poll: got %s, %v; want accepted", out, err)
	}
	if out, _ := s.RecordPoll(ctx, "p", store.PollResult{Report: report("p", "completed")}); out != store.OutcomeDuplicate {
		t.Fatalf("second terminal poll: got %s, want duplicate", out)
	}
	if got := deliver(t, s, report("p", "completed")); got != store.OutcomeDuplicate {
		t.Fatalf("webhook after the poll: got %s, want duplicate", got)
	}
	out, err = s.RecordPoll(ctx, "gone", store.PollResult{NotFound: true, End: store.StatusNotFound, Err: "Nouvel answered 404 (3 in a row)"})
	if err != nil || out != store.OutcomeAccepted {
		t.Fatalf("End not_found: got %s, %v; want accepted", out, err)
	}
	p, _ := s.Job(ctx, "p")
	g, _ := s.Job(ctx, "gone")
	if p.Source != store.SourcePoll || p.Seq != 1 || p.WebhookDeliveries != 1 || p.PollCount != 2 {
		t.Errorf("p: got source %s seq %d webhooks %d polls %d, want poll 1 1 2", p.Source, p.Seq, p.WebhookDeliveries, p.PollCount)
	}
	if g.Status != store.StatusNotFound || !g.Terminal || g.Seq != 2 {
		t.Errorf("gone: got %s terminal=%v seq %d, want not_found, terminal, seq 2", g.Status, g.Terminal, g.Seq)
	}
}

func testExpireAndMissedWebhooks(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"old", "polled", "hooked"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	if _, _, err := s.Track(ctx, "young", time.Now()); err != nil {
		t.Fatal(err)
	}
	// polled: a poll sees the end and no webhook follows; hooked: the
	// webhook follows the poll.
	for _, id := range []string{"polled", "hooked"} {
		if _, err := s.RecordPoll(ctx, id, store.PollResult{Report: report(id, "completed")}); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, s, report("hooked", "completed"))
	polledAt := time.Now()

	ids, err := s.ExpireJobs(ctx, cutoff)
	if err != nil || fmt.Sprint(ids) != "[old]" {
		t.Fatalf("ExpireJobs: got %v, %v; want [old]", ids, err)
	}
	if ids, err := s.ExpireJobs(ctx, cutoff); err != nil || len(ids) != 0 {
		t.Fatalf("second ExpireJobs: got %v, %v; want none", ids, err)
	}
	old, _ := s.Job(ctx, "old")
	if old.Status != store.StatusExpired || !old.Terminal || old.Seq != 3 {
		t.Fatalf("old: got %s terminal=%v seq %d, want expired, terminal, seq 3", old.Status, old.Terminal, old.Seq)
	}
	if young, _ := s.Job(ctx, "young"); young.Terminal {
		t.Fatalf("young: got %s, want it still pending", young.Status)
	}

	const grace = 2 * time.Minute
	if n, err := s.MarkMissedWebhooks(ctx, polledAt, grace); err != nil || n != 0 {
		t.Fatalf("MarkMissedWebhooks within grace: got %d, %v; want 0", n, err)
	}
	later := polledAt.Add(grace + time.Second)
	if n, err := s.MarkMissedWebhooks(ctx, later, grace); err != nil || n != 1 {
		t.Fatalf("MarkMissedWebhooks: got %d, %v; want 1 (polled)", n, err)
	}
	if n, err := s.MarkMissedWebhooks(ctx, later, grace); err != nil || n != 0 {
		t.Fatalf("second MarkMissedWebhooks: got %d, %v; want 0", n, err)
	}
	for id, want := range map[string]bool{"polled": true, "hooked": false, "old": false} {
		if j, _ := s.Job(ctx, id); j.WebhookMissed != want {
			t.Errorf("%s: webhookMissed %v, want %v", id, j.WebhookMissed, want)
		}
	}
	if st, _ := s.Stats(ctx); st.WebhooksMissed != 1 {
		t.Errorf("stats: webhooksMissed %d, want 1", st.WebhooksMissed)
	}
}

func testStatsCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	deliver(t, s, report("w1", "completed"))
	deliver(t, s, report("w1", "completed")) // duplicate
	deliver(t, s, report("w1", "failed"))    // conflict
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{"), ReceivedAt: time.Now(), Problem: "bad JSON"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordPoll(ctx, "p1", store.PollResult{Report: report("p1", "partial")}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.MarkMissedWebhooks(ctx, time.Now().Add(3*time.Minute), 2*time.Minute); err != nil || n != 1 {
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

// testPruneNeverReusesSeq: Prune removes jobs that ended before the cutoff,
// oldest first, with their deliveries and their counts, never a job still
// open or ended later, and a job ended after everything was pruned takes
// the next seq.
func testPruneNeverReusesSeq(t *testing.T, s store.Store) {
	ctx := context.Background()
	for range 3 {
		deliver(t, s, report("a", "completed"))
	}
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{bad`), ReceivedAt: time.Now(), Problem: "bad JSON"}); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, report("b", "completed"))
	if _, _, err := s.Track(ctx, "open", time.Now()); err != nil { // never ends: never pruned
		t.Fatal(err)
	}
	cutoff := nextInstant()
	deliver(t, s, report("c", "completed"))

	for i, want := range []int{1, 1, 0} {
		if n, err := s.Prune(ctx, cutoff, 1); err != nil || n != want {
			t.Fatalf("Prune %d: got %d, %v; want %d", i+1, n, err, want)
		}
	}
	for _, id := range []string{"a", "b"} {
		if _, err := s.Job(ctx, id); !errorsIsNotFound(err) {
			t.Fatalf("pruned job %s: got %v, want ErrNotFound", id, err)
		}
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
		Deliveries: 1, LastSeq: 3}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("stats after pruning:\ngot  %+v\nwant %+v", st, want)
	}
	// Prune every ended job, then end one more: it takes the next seq.
	if n, err := s.Prune(ctx, time.Now().Add(24*time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("Prune all: got %d, %v; want 1", n, err)
	}
	deliver(t, s, report("d", "completed"))
	if j, err := s.Job(ctx, "d"); err != nil || j.Seq != 4 {
		t.Fatalf("job ended after pruning everything: got seq %d, %v; want 4", j.Seq, err)
	}
	if _, err := s.Job(ctx, "open"); err != nil {
		t.Fatalf("open job after pruning everything: %v", err)
	}
}

// nextInstant returns a time after every commit made so far and not after
// any made once it returns: it waits for the clock to move past its reading.
func nextInstant() time.Time {
	t := time.Now()
	for !time.Now().After(t) {
	}
	return t.Add(time.Nanosecond)
}

// testNextPollAtShownUntilTheEnd: a job not yet ended shows when its next
// poll is due, in every job read, from Track on and as each poll moves it;
// once it ends, by a webhook, a poll or expiry, it shows none.
func testNextPollAtShownUntilTheEnd(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	shows := func(what, id string, want *time.Time) {
		t.Helper()
		reads := map[string]func() (store.Job, error){
			"Job":               func() (store.Job, error) { return s.Job(ctx, id) },
			"JobWithDeliveries": func() (store.Job, error) { return s.JobWithDeliveries(ctx, id) },
			"ListJobs": func() (store.Job, error) {
				jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: store.MaxLimit})
				for _, j := range jobs {
					if j.JobID == id {
						return j, err
					}
				}
				return store.Job{}, fmt.Errorf("ListJobs: %s missing (%v)", id, err)
			},
			"WaitJob": func() (store.Job, error) {
				wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
				return s.WaitJob(wctx, id)
			},
		}
		for read, fn := range reads {
			j, err := fn()
			if err != nil {
				t.Fatalf("%s: %s(%s): %v", what, read, id, err)
			}
			b, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			shown := strings.Contains(string(b), `"nextPollAt":`)
			switch {
			case want == nil && (j.NextPollAt != nil || shown):
				t.Errorf("%s: %s(%s) shows next poll %v (in JSON: %v); want none", what, read, id, j.NextPollAt, shown)
			case want != nil && (j.NextPollAt == nil || !j.NextPollAt.Equal(*want) || !shown):
				t.Errorf("%s: %s(%s) shows next poll %v (in JSON: %v); want %s", what, read, id, j.NextPollAt, shown, want)
			}
		}
	}
	for _, id := range []string{"by-webhook", "by-poll", "by-expiry"} {
		j, created, err := s.Track(ctx, id, first)
		if err != nil || !created || j.NextPollAt == nil || !j.NextPollAt.Equal(first) {
			t.Fatalf("Track(%s): got next poll %v, created %v, %v; want %s", id, j.NextPollAt, created, err, first)
		}
		shows("tracked", id, &first)
	}
	next := first.Add(15 * time.Second)
	if _, err := s.RecordPoll(ctx, "by-poll", store.PollResult{
		Report: &store.Report{JobID: "by-poll", Status: store.StatusRunning, Progress: 30}, Next: next}); err != nil {
		t.Fatal(err)
	}
	shows("after a running poll", "by-poll", &next)
	shows("another job's poll", "by-webhook", &first)

	deliver(t, s, report("by-webhook", store.StatusCompleted))
	shows("ended by a webhook", "by-webhook", nil)
	if out, err := s.RecordPoll(ctx, "by-poll", store.PollResult{Report: report("by-poll", store.StatusCompleted),
		Next: next.Add(time.Minute)}); err != nil || out != store.OutcomeAccepted {
		t.Fatalf("RecordPoll ending by-poll: got %q, %v; want accepted", out, err)
	}
	shows("ended by a poll", "by-poll", nil)
	if ids, err := s.ExpireJobs(ctx, time.Now().Add(time.Hour)); err != nil || len(ids) != 1 || ids[0] != "by-expiry" {
		t.Fatalf("ExpireJobs: got %v, %v; want by-expiry", ids, err)
	}
	shows("expired", "by-expiry", nil)
	events, _, err := s.Events(ctx, 0, 10)
	if err != nil || len(events) != 3 {
		t.Fatalf("Events: got %d, %v; want the 3 ended", len(events), err)
	}
	for _, j := range events {
		if j.NextPollAt != nil {
			t.Errorf("Events: %s shows next poll %s; want none once ended", j.JobID, j.NextPollAt)
		}
	}
	deliver(t, s, report("never-tracked", store.StatusCompleted))
	shows("ended by its first webhook", "never-tracked", nil)
}
