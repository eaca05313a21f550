package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// testTimelinePolls: every poll counted in a job's pollCount is in its
// timeline, with what Nouvel said, the error, and whether it ended the job;
// a poll that changes nothing (of a job ended meanwhile, or unknown) is not.
func testTimelinePolls(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"p", "gone", "quiet"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	next := time.Now().Add(time.Minute)
	for _, r := range []store.PollResult{
		{Report: &store.Report{JobID: "p", Status: store.StatusRunning, Progress: 40}, Next: next},
		{Failed: true, Err: "Nouvel answered 502", Next: next},
		{NotFound: true, Err: "Nouvel answered 404 (1 in a row)", Next: next},
		{Report: report("p", "completed")},
		{Report: report("p", "completed")},                                           // a duplicate: counted
		{Report: &store.Report{JobID: "p", Status: store.StatusRunning}, Next: next}, // stale: changes nothing
	} {
		if _, err := s.RecordPoll(ctx, "p", r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordPoll(ctx, "gone", store.PollResult{NotFound: true, End: store.StatusNotFound,
		Err: "Nouvel answered 404 (3 in a row)"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordPoll(ctx, "ghost", store.PollResult{Failed: true, Err: "x", Next: next}); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	show := func(id string) string {
		t.Helper()
		polls, err := s.JobPolls(ctx, id)
		if err != nil {
			t.Fatalf("JobPolls(%s): %v", id, err)
		}
		j, err := s.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(polls) != j.PollCount {
			t.Errorf("JobPolls(%s): %d polls, pollCount %d", id, len(polls), j.PollCount)
		}
		got := ""
		last := start.Add(-time.Microsecond)
		for _, p := range polls {
			if p.At.Before(last) || p.At.After(end.Add(time.Microsecond)) {
				t.Errorf("JobPolls(%s): poll at %s, want in order between %s and %s", id, p.At, start, end)
			}
			last = p.At
			got += fmt.Sprintf("%q %q %v; ", p.Status, p.Error, p.Ended)
		}
		return got
	}
	want := `"running" "" false; "" "Nouvel answered 502" false; "" "Nouvel answered 404 (1 in a row)" false; "completed" "" true; "completed" "" false; `
	if got := show("p"); got != want {
		t.Errorf("JobPolls(p):\ngot  %s\nwant %s", got, want)
	}
	if got, want := show("gone"), `"" "Nouvel answered 404 (3 in a row)" true; `; got != want {
		t.Errorf("JobPolls(gone):\ngot  %s\nwant %s", got, want)
	}
	if got := show("quiet"); got != "" {
		t.Errorf("JobPolls of a job never polled: got %s, want none", got)
	}
	if _, err := s.JobPolls(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobPolls of an unknown job: got %v, want ErrNotFound", err)
	}
	// The timeline keeps the last MaxDeliveries polls, oldest first.
	for i := 1; i <= store.MaxDeliveries+3; i++ {
		if _, err := s.RecordPoll(ctx, "quiet", store.PollResult{Failed: true, Err: fmt.Sprint("poll ", i), Next: next}); err != nil {
			t.Fatal(err)
		}
	}
	polls, err := s.JobPolls(ctx, "quiet")
	if err != nil || len(polls) != store.MaxDeliveries || polls[0].Error != "poll 4" ||
		polls[len(polls)-1].Error != fmt.Sprint("poll ", store.MaxDeliveries+3) {
		t.Fatalf("JobPolls after %d polls: got %d, %v; want the last %d, oldest first", store.MaxDeliveries+3, len(polls), err, store.MaxDeliveries)
	}
}

// testTimelineDeliveries: a job's deliveries carry an id that gives back
// their exact bytes, and the outcome each had; an id of another job's
// delivery, or none, is ErrNotFound.
func testTimelineDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	accepted := report("a", "completed")
	agreeing := report("a", "completed")
	agreeing.Projects = []store.Project{{ProjectID: "p1", Title: "other title", Status: "completed"}}
	for _, r := range []*store.Report{accepted, accepted, report("a", "failed"), agreeing} {
		deliver(t, s, r)
	}
	deliver(t, s, report("b", "completed"))
	j, err := s.JobWithDeliveries(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes := []store.Outcome{store.OutcomeAccepted, store.OutcomeConflict, store.OutcomeDuplicate}
	wantBodies := []*store.Report{accepted, report("a", "failed"), agreeing}
	if len(j.Deliveries) != len(wantOutcomes) {
		t.Fatalf("JobWithDeliveries: got %+v, want %d deliveries", j.Deliveries, len(wantOutcomes))
	}
	seen := map[int64]bool{}
	for i, d := range j.Deliveries {
		if d.Outcome != wantOutcomes[i] || seen[d.ID] || d.ID == 0 {
			t.Errorf("delivery %d: got id %d outcome %s, want a new id, %s", i, d.ID, d.Outcome, wantOutcomes[i])
		}
		seen[d.ID] = true
		want, err := json.Marshal(wantBodies[i])
		if err != nil {
			t.Fatal(err)
		}
		body, err := s.DeliveryBody(ctx, "a", d.ID)
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("DeliveryBody(a, %d): got %q, %v; want %q", d.ID, body, err, want)
		}
		if _, err := s.DeliveryBody(ctx, "b", d.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeliveryBody(b, a's %d): got %v, want ErrNotFound", d.ID, err)
		}
	}
	b, err := s.JobWithDeliveries(ctx, "b")
	if err != nil || len(b.Deliveries) != 1 {
		t.Fatalf("JobWithDeliveries(b): %+v, %v", b.Deliveries, err)
	}
	if _, err := s.DeliveryBody(ctx, "a", b.Deliveries[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeliveryBody(a, b's delivery): got %v, want ErrNotFound", err)
	}
	if _, err := s.DeliveryBody(ctx, "nope", b.Deliveries[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeliveryBody of an unknown job: got %v, want ErrNotFound", err)
	}
	if _, err := s.DeliveryBody(ctx, "b", b.Deliveries[0].ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeliveryBody of an unknown id: got %v, want ErrNotFound", err)
	}
}

// testPruneRemovesForwardsAndTimeline: pruning a job removes its forward,
// its attempts and its polls with it; a job ended later keeps all of them,
// and so does a job whose forward still waits to be sent (pending or
// paused), until the app has it or it failed.
func testPruneRemovesForwardsAndTimeline(t *testing.T, s store.Store) {
	ctx := context.Background()
	ended := func(id string) {
		t.Helper()
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordPoll(ctx, id, store.PollResult{Failed: true, Err: "502", Next: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordPoll(ctx, id, store.PollResult{Report: report(id, "completed")}); err != nil {
			t.Fatal(err)
		}
		c := claimOne(t, s, time.Now().Add(time.Second), id)
		finish(t, s, c, store.ForwardResult{At: time.Now(), Status: 500, Err: "app answered 500", State: store.ForwardFailed})
	}
	ended("old1")
	deliver(t, s, report("waiting", "completed")) // pending, its attempt in flight
	waiting := claimOne(t, s, time.Now().Add(time.Second), "waiting")
	ended("old2")
	deliver(t, s, report("old3", "completed"))
	finish(t, s, claimOne(t, s, time.Now().Add(time.Second), "old3"), delivered(time.Now()))
	cutoff := nextInstant()
	ended("new")
	// A forward still waiting to be sent keeps its job, and the jobs after
	// it are pruned all the same.
	if n, err := s.Prune(ctx, cutoff, 2); err != nil || n != 2 {
		t.Fatalf("Prune of 2: got %d, %v; want 2", n, err)
	}
	if n, err := s.Prune(ctx, cutoff, 10); err != nil || n != 1 {
		t.Fatalf("Prune: got %d, %v; want 1", n, err)
	}
	if n, err := s.Prune(ctx, cutoff, 10); err != nil || n != 0 {
		t.Fatalf("Prune again: got %d, %v; want 0, the waiting forward kept", n, err)
	}
	if f := forwardOf(t, s, "waiting"); f.State != store.ForwardPending {
		t.Fatalf("the waiting forward after pruning: got %+v", f)
	}
	finish(t, s, waiting, delivered(time.Now()))
	if n, err := s.Prune(ctx, cutoff, 10); err != nil || n != 1 {
		t.Fatalf("Prune once delivered: got %d, %v; want 1", n, err)
	}
	for _, id := range []string{"old1", "old2", "old3", "waiting"} {
		if _, err := s.JobPolls(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("JobPolls(%s) after pruning: got %v, want ErrNotFound", id, err)
		}
		if _, err := s.ForwardAttempts(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ForwardAttempts(%s) after pruning: got %v, want ErrNotFound", id, err)
		}
	}
	fs, _, err := s.ListForwards(ctx, store.ForwardFilter{Limit: 10})
	if err != nil || len(fs) != 1 || fs[0].JobID != "new" {
		t.Fatalf("ListForwards after pruning: got %+v, %v; want new's alone", fs, err)
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardFailed] != 1 || st.ByState[store.ForwardPending] != 0 || st.Depth != 0 || st.OldestPending != nil {
		t.Fatalf("ForwardStats after pruning: got %+v, %v; want new's failed forward alone", st, err)
	}
	if polls, err := s.JobPolls(ctx, "new"); err != nil || len(polls) != 2 {
		t.Errorf("JobPolls(new): got %+v, %v; want its 2 polls", polls, err)
	}
	if a, err := s.ForwardAttempts(ctx, "new"); err != nil || len(a) != 1 {
		t.Errorf("ForwardAttempts(new): got %+v, %v; want its attempt", a, err)
	}
	// Everything pruned: the queue is empty, and a replay finds nothing
	// to queue before the job left.
	if n, err := s.Prune(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("Prune all: got %d, %v; want 1", n, err)
	}
	if n, err := s.ReplayForwards(ctx, time.Now(), 0); err != nil || n != 0 {
		t.Fatalf("replay of a pruned log: got %d, %v; want 0", n, err)
	}
}
