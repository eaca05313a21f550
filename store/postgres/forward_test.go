package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// t0 is the tests' fixed clock: jobs end at it, so their forwards are due
// at it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

func claimAt(t *testing.T, s *Store, now time.Time, n int, lease time.Duration, ordered bool) []store.ForwardClaim {
	t.Helper()
	c, err := s.ClaimForwards(context.Background(), now, n, lease, ordered)
	if err != nil {
		t.Fatalf("ClaimForwards at %s: %v", now.Format(time.RFC3339), err)
	}
	return c
}

func claimedIDs(cs []store.ForwardClaim) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.Job.JobID)
	}
	return ids
}

func mustJob(t *testing.T, s *Store, id string) store.Job {
	t.Helper()
	j, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("Job %s: %v", id, err)
	}
	return j
}

// A job's end queues its forward in the same transaction whichever way the
// job ends: a webhook, a poll, a poll that gave up (not_found) and the
// expiry sweep. With forwarding off none is queued.
func TestForwardQueuedAtEveryEnd(t *testing.T) {
	ctx := context.Background()
	for _, on := range []bool{true, false} {
		s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: on})
		if _, err := s.RecordWebhook(ctx, completed("hook")); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"tracked-hook", "polled", "gone", "old"} {
			if _, _, err := s.Track(ctx, id, t0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RecordWebhook(ctx, completed("tracked-hook")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordPoll(ctx, "polled", store.PollResult{Report: &store.Report{JobID: "polled",
			Status: store.StatusFailed}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordPoll(ctx, "gone", store.PollResult{End: store.StatusNotFound, NotFound: true,
			Err: "404"}); err != nil {
			t.Fatal(err)
		}
		if ids, err := s.ExpireJobs(ctx, t0); err != nil || len(ids) != 1 {
			t.Fatalf("ExpireJobs: %v, %v; want old", ids, err)
		}
		for _, id := range []string{"hook", "tracked-hook", "polled", "gone", "old"} {
			j := mustJob(t, s, id)
			switch {
			case !on && j.Forward != nil:
				t.Errorf("forwarding off: %s has forward %+v; want none", id, *j.Forward)
			case on && j.Forward == nil:
				t.Errorf("forwarding on: %s has no forward", id)
			case on:
				f := j.Forward
				if f.State != store.ForwardPending || f.Attempts != 0 || f.NextAttemptAt == nil ||
					!f.NextAttemptAt.Equal(*j.TerminalAt) || f.DeliveredAt != nil {
					t.Errorf("%s: forward %+v; want pending, due at its end %s", id, *f, j.TerminalAt)
				}
			}
		}
		st, err := s.ForwardStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if on {
			want = 5
		}
		if st.ByState[store.ForwardPending] != want || st.Depth != want || len(st.ByState) != 4 {
			t.Errorf("forward %v: stats %+v; want %d pending of 4 states", on, st, want)
		}
		if on != (st.OldestPending != nil) || (on && !st.OldestPending.Equal(t0)) {
			t.Errorf("forward %v: oldest pending %v", on, st.OldestPending)
		}
		// Every read of a job shows its forward.
		jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		events, _, err := s.Events(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range append(jobs, events...) {
			if on != (j.Forward != nil) {
				t.Errorf("forward %v: %s read with forward %v", on, j.JobID, j.Forward)
			}
		}
	}
}

// The life of one forward: claimed with its job, refused under a stale
// token, retried when due, and delivered; every attempt is logged.
func TestForwardClaimAndFinish(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	if _, err := s.RecordWebhook(ctx, completed("a")); err != nil {
		t.Fatal(err)
	}
	if got := claimAt(t, s, t0.Add(-time.Second), 10, time.Minute, false); len(got) != 0 {
		t.Fatalf("claim before due: got %v; want none", claimedIDs(got))
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !next.Equal(t0) {
		t.Fatalf("NextForwardAt: %v %v %v; want %s", next, ok, err, t0)
	}
	c := claimAt(t, s, t0, 10, time.Minute, false)
	if len(c) != 1 || c[0].Job.JobID != "a" || c[0].Attempt != 1 || c[0].Token != 1 ||
		c[0].Job.Forward == nil || c[0].Job.Status != store.StatusCompleted || c[0].Job.Seq != 1 {
		t.Fatalf("claim: got %+v; want a, attempt 1, token 1, with its job", c)
	}
	if got := claimAt(t, s, t0.Add(30*time.Second), 10, time.Minute, false); len(got) != 0 {
		t.Fatalf("claim while leased: got %v; want none", claimedIDs(got))
	}
	if next, ok, _ := s.NextForwardAt(ctx); !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("NextForwardAt while leased: %v %v; want the lease's end", next, ok)
	}
	retry := t0.Add(10 * time.Minute)
	ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: t0.Add(time.Second), Took: 1500 * time.Millisecond,
		Status: 500, Err: "app answered 500", State: store.ForwardPending, Next: retry})
	if err != nil || !ok {
		t.Fatalf("finish: %v %v; want recorded", ok, err)
	}
	if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: t0, State: store.ForwardDelivered,
		Status: 200}); err != nil || ok {
		t.Fatalf("finishing twice: %v %v; want refused", ok, err)
	}
	f := mustJob(t, s, "a").Forward
	if f.State != store.ForwardPending || f.Attempts != 1 || f.LastStatus != 500 || f.LastError != "app answered 500" ||
		f.NextAttemptAt == nil || !f.NextAttemptAt.Equal(retry) {
		t.Fatalf("after a failure: %+v", *f)
	}
	if got := claimAt(t, s, retry.Add(-time.Second), 10, time.Minute, false); len(got) != 0 {
		t.Fatalf("claim before the retry is due: %v", claimedIDs(got))
	}
	c = claimAt(t, s, retry, 10, time.Minute, false)
	if len(c) != 1 || c[0].Attempt != 2 || c[0].Token != 2 {
		t.Fatalf("second claim: %+v; want attempt 2, token 2", c)
	}
	done := retry.Add(time.Second)
	if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: done, Took: 20 * time.Millisecond,
		Status: 204, State: store.ForwardDelivered}); err != nil || !ok {
		t.Fatalf("delivered: %v %v", ok, err)
	}
	f = mustJob(t, s, "a").Forward
	if f.State != store.ForwardDelivered || f.Attempts != 2 || f.LastStatus != 204 || f.LastError != "" ||
		f.NextAttemptAt != nil || f.DeliveredAt == nil || !f.DeliveredAt.Equal(done) {
		t.Fatalf("after delivery: %+v", *f)
	}
	if _, ok, _ := s.NextForwardAt(ctx); ok {
		t.Errorf("NextForwardAt with none pending: ok; want not")
	}
	attempts, err := s.ForwardAttempts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ForwardAttempt{
		{Attempt: 1, At: t0.Add(time.Second), TookMs: 1500, Status: 500, Error: "app answered 500", State: store.ForwardPending},
		{Attempt: 2, At: done, TookMs: 20, Status: 204, State: store.ForwardDelivered},
	}
	if len(attempts) != len(want) {
		t.Fatalf("attempts: got %+v; want %+v", attempts, want)
	}
	for i := range want {
		if attempts[i] != want[i] {
			t.Errorf("attempt %d: got %+v; want %+v", i+1, attempts[i], want[i])
		}
	}
	if _, err := s.ForwardAttempts(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("attempts of an unknown job: %v; want ErrNotFound", err)
	}
	st, _ := s.ForwardStats(ctx)
	if st.ByState[store.ForwardDelivered] != 1 || st.Depth != 0 || st.OldestPending != nil {
		t.Errorf("stats: %+v", st)
	}
}

// A 410 pauses all forwarding until resumed; a failed forward waits for a
// retry.
func TestForwardPauseAndFailed(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	for _, id := range []string{"a", "b", "c"} {
		if _, err := s.RecordWebhook(ctx, completed(id)); err != nil {
			t.Fatal(err)
		}
	}
	c := claimAt(t, s, t0, 2, time.Minute, false)
	if len(c) != 2 || c[0].Job.JobID != "a" || c[1].Job.JobID != "b" {
		t.Fatalf("claim 2: got %v; want a, b (lowest seq first)", claimedIDs(c))
	}
	if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: t0, Status: 410,
		Err: "app answered 410 Gone at http://app/hook", State: store.ForwardPaused}); err != nil || !ok {
		t.Fatalf("paused: %v %v", ok, err)
	}
	if ok, err := s.FinishForward(ctx, c[1], store.ForwardResult{At: t0, Status: 0, Err: "timeout",
		State: store.ForwardFailed}); err != nil || !ok {
		t.Fatalf("failed: %v %v", ok, err)
	}
	st, _ := s.ForwardStats(ctx)
	if !st.Paused || st.PauseReason != "app answered 410 Gone at http://app/hook" || st.Depth != 2 ||
		st.ByState[store.ForwardPaused] != 1 || st.ByState[store.ForwardFailed] != 1 || st.ByState[store.ForwardPending] != 1 {
		t.Fatalf("stats while paused: %+v", st)
	}
	if got := claimAt(t, s, t0.Add(time.Hour), 10, time.Minute, false); len(got) != 0 {
		t.Fatalf("claim while paused: %v; want none", claimedIDs(got))
	}
	if got := claimAt(t, s, t0.Add(time.Hour), 1, time.Minute, true); len(got) != 0 {
		t.Fatalf("ordered claim while paused: %v; want none", claimedIDs(got))
	}
	if _, ok, _ := s.NextForwardAt(ctx); ok {
		t.Errorf("NextForwardAt while paused: ok; want not")
	}
	later := t0.Add(time.Hour)
	if err := s.ResumeForwarding(ctx, later); err != nil {
		t.Fatal(err)
	}
	if f := mustJob(t, s, "a").Forward; f.State != store.ForwardPending || !f.NextAttemptAt.Equal(later) {
		t.Errorf("a after resume: %+v; want pending at %s", *f, later)
	}
	if f := mustJob(t, s, "b").Forward; f.State != store.ForwardFailed || f.NextAttemptAt != nil {
		t.Errorf("b after resume: %+v; want still failed", *f)
	}
	if got := claimedIDs(claimAt(t, s, later, 10, time.Minute, false)); len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Errorf("claim after resume: %v; want a, c", got)
	}
	st, _ = s.ForwardStats(ctx)
	if st.Paused || st.PauseReason != "" {
		t.Errorf("stats after resume: %+v", st)
	}
}

// Ordered claims take only the pending forward with the lowest seq: one not
// yet due, or leased, holds every later one.
func TestForwardOrderedHead(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	for _, id := range []string{"a", "b"} {
		if _, err := s.RecordWebhook(ctx, completed(id)); err != nil {
			t.Fatal(err)
		}
	}
	c := claimAt(t, s, t0, 5, time.Minute, true)
	if len(c) != 1 || c[0].Job.JobID != "a" {
		t.Fatalf("ordered claim: %v; want a alone", claimedIDs(c))
	}
	if got := claimAt(t, s, t0, 5, time.Minute, true); len(got) != 0 {
		t.Fatalf("ordered claim while a is leased: %v; want none", claimedIDs(got))
	}
	b := claimAt(t, s, t0, 5, time.Minute, false)
	if got := claimedIDs(b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("unordered claim while a is leased: %v; want b", got)
	}
	retry := t0.Add(time.Minute)
	if ok, _ := s.FinishForward(ctx, c[0], store.ForwardResult{At: t0, Status: 503, Err: "503",
		State: store.ForwardPending, Next: retry}); !ok {
		t.Fatal("finish a: refused")
	}
	if ok, _ := s.FinishForward(ctx, b[0], store.ForwardResult{At: t0, Status: 503, Err: "503",
		State: store.ForwardPending, Next: t0}); !ok {
		t.Fatal("finish b: refused")
	}
	if got := claimAt(t, s, retry.Add(-time.Second), 5, time.Minute, true); len(got) != 0 {
		t.Fatalf("ordered claim before a is due: %v; want none, though b is due", claimedIDs(got))
	}
	if got := claimAt(t, s, retry, 5, time.Minute, true); len(got) != 1 || got[0].Job.JobID != "a" {
		t.Fatalf("ordered claim once a is due: %v; want a", claimedIDs(got))
	}
}

// The queue pages failed, paused, pending then delivered, each in seq
// order, filtered by state; retry and replay requeue, fencing off a claim
// in flight.
func TestForwardListRetryReplay(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	ids := []string{"j1", "j2", "j3", "j4", "j5", "j6"}
	for _, id := range ids {
		if _, err := s.RecordWebhook(ctx, completed(id)); err != nil {
			t.Fatal(err)
		}
	}
	c := claimAt(t, s, t0, 5, time.Minute, false) // j1..j5
	finish := func(c store.ForwardClaim, st store.ForwardState) {
		t.Helper()
		r := store.ForwardResult{At: t0, Status: 500, Err: "500", State: st, Next: t0.Add(time.Hour)}
		if st == store.ForwardDelivered {
			r.Status, r.Err = 200, ""
		}
		if ok, err := s.FinishForward(ctx, c, r); err != nil || !ok {
			t.Fatalf("finish %s as %s: %v %v", c.Job.JobID, st, ok, err)
		}
	}
	finish(c[0], store.ForwardDelivered) // j1
	finish(c[1], store.ForwardFailed)    // j2
	finish(c[2], store.ForwardDelivered) // j3
	finish(c[3], store.ForwardFailed)    // j4
	// j5 stays claimed, j6 pending unclaimed.
	var all []string
	cursor := ""
	for range 10 {
		page, next, err := s.ListForwards(ctx, store.ForwardFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range page {
			all = append(all, q.JobID+":"+string(q.State))
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	want := "j2:failed j4:failed j5:pending j6:pending j1:delivered j3:delivered"
	if got := strings.Join(all, " "); got != want {
		t.Errorf("queue pages: got %s; want %s", got, want)
	}
	page, next, err := s.ListForwards(ctx, store.ForwardFilter{Limit: 10,
		States: []store.ForwardState{store.ForwardDelivered, store.ForwardFailed}})
	if err != nil || next != "" || len(page) != 4 || page[0].JobID != "j2" || page[3].JobID != "j3" {
		t.Errorf("failed and delivered: %+v %q %v", page, next, err)
	}
	if page[0].Seq != 2 || !page[0].EnqueuedAt.Equal(t0) || page[0].Attempts != 1 || page[0].LastError != "500" {
		t.Errorf("j2 in the queue: %+v", page[0])
	}
	for _, f := range []store.ForwardFilter{{Limit: 0}, {Limit: store.MaxLimit + 1}, {Limit: 1, Cursor: "x"},
		{Limit: 1, Cursor: "9.1"}, {Limit: 1, States: []store.ForwardState{"lost"}}} {
		if _, _, err := s.ListForwards(ctx, f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListForwards %+v: %v; want ErrInvalid", f, err)
		}
	}

	// Retry is all or nothing.
	if _, _, err := s.Track(ctx, "open", t0); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	if _, err := s.RetryForwards(ctx, later, []string{"j2", "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retry of an unknown job: %v; want ErrNotFound", err)
	}
	if _, err := s.RetryForwards(ctx, later, []string{"j2", "open"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("retry of a job still open: %v; want ErrInvalid", err)
	}
	if f := mustJob(t, s, "j2").Forward; f.State != store.ForwardFailed {
		t.Fatalf("j2 after refused retries: %+v; want still failed", *f)
	}
	n, err := s.RetryForwards(ctx, later, []string{"j2", "j1", "j5", "j2"})
	if err != nil || n != 3 {
		t.Fatalf("retry: %d %v; want 3", n, err)
	}
	for _, id := range []string{"j2", "j1", "j5"} {
		f := mustJob(t, s, id).Forward
		if f.State != store.ForwardPending || f.Attempts != 0 || f.LastStatus != 0 || f.LastError != "" ||
			!f.NextAttemptAt.Equal(later) {
			t.Errorf("%s after retry: %+v", id, *f)
		}
	}
	if f := mustJob(t, s, "j1").Forward; f.DeliveredAt == nil {
		t.Errorf("j1 after retry lost when it was delivered")
	}
	if ok, err := s.FinishForward(ctx, c[4], store.ForwardResult{At: later, Status: 200,
		State: store.ForwardDelivered}); err != nil || ok {
		t.Errorf("finishing j5's claim made before the retry: %v %v; want refused", ok, err)
	}
	got := claimAt(t, s, later, 10, time.Minute, false)
	if ids := strings.Join(claimedIDs(got), " "); ids != "j1 j2 j5 j6" {
		t.Errorf("claim after retry: %s; want j1 j2 j5 j6", ids)
	}

	// Replay requeues every job after a seq, whatever its state, and
	// creates the forwards of jobs that ended with forwarding off.
	off := openTest(t, freshSchema(t), Options{Now: fixedClock})
	for _, id := range ids {
		if _, err := off.RecordWebhook(ctx, completed(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := off.ReplayForwards(ctx, later, -1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("replay after -1: %v; want ErrInvalid", err)
	}
	if n, err := off.ReplayForwards(ctx, later, 4); err != nil || n != 2 {
		t.Fatalf("replay after 4: %d %v; want 2", n, err)
	}
	if j := mustJob(t, off, "j4"); j.Forward != nil {
		t.Errorf("j4 (seq 4) after replay after 4: %+v; want none", *j.Forward)
	}
	if j := mustJob(t, off, "j5"); j.Forward == nil || j.Forward.State != store.ForwardPending {
		t.Errorf("j5 after replay: %v; want pending", j.Forward)
	}
	if n, err := off.ReplayForwards(ctx, later, 0); err != nil || n != 6 {
		t.Errorf("replay all: %d %v; want 6", n, err)
	}
}

// A job's timeline: its polls, and the ids, outcomes and bytes of its
// deliveries.
func TestTimeline(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock})
	if _, _, err := s.Track(ctx, "a", t0); err != nil {
		t.Fatal(err)
	}
	polls := []store.PollResult{
		{Err: "nouvel answered 502", Failed: true, Next: t0},
		{Report: &store.Report{JobID: "a", Status: store.StatusRunning, Progress: 50}, Next: t0},
		{Report: &store.Report{JobID: "a", Status: store.StatusCompleted, TotalProjects: 1}},
		{Report: &store.Report{JobID: "a", Status: store.StatusCompleted, TotalProjects: 1}},
	}
	for _, p := range polls {
		if _, err := s.RecordPoll(ctx, "a", p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.JobPolls(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.PollRecord{
		{At: t0, Error: "nouvel answered 502"},
		{At: t0, Status: store.StatusRunning},
		{At: t0, Status: store.StatusCompleted, Ended: true},
		{At: t0, Status: store.StatusCompleted},
	}
	if len(got) != len(want) {
		t.Fatalf("polls: got %+v; want %+v", got, want)
	}
	for i := range want {
		if !got[i].At.Equal(want[i].At) || got[i].Status != want[i].Status || got[i].Error != want[i].Error ||
			got[i].Ended != want[i].Ended {
			t.Errorf("poll %d: got %+v; want %+v", i+1, got[i], want[i])
		}
	}
	if _, _, err := s.Track(ctx, "b", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordPoll(ctx, "b", store.PollResult{End: store.StatusNotFound, NotFound: true,
		Err: "nouvel answered 404"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.JobPolls(ctx, "b"); len(got) != 1 || !got[0].Ended || got[0].Error != "nouvel answered 404" {
		t.Errorf("b's polls: %+v; want one that ended it", got)
	}
	if _, err := s.JobPolls(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("polls of an unknown job: %v; want ErrNotFound", err)
	}

	d := completed("c")
	other := d
	other.Body = []byte(`{"jobId":"c","status":"failed"}`)
	other.Report = &store.Report{JobID: "c", Status: store.StatusFailed}
	for _, x := range []store.WebhookDelivery{d, d, other} {
		if _, err := s.RecordWebhook(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	j, err := s.JobWithDeliveries(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Deliveries) != 2 || j.Deliveries[0].Outcome != store.OutcomeAccepted ||
		j.Deliveries[1].Outcome != store.OutcomeConflict || j.Deliveries[0].ID == j.Deliveries[1].ID {
		t.Fatalf("deliveries: %+v; want accepted then conflict, each with its id", j.Deliveries)
	}
	for i, body := range [][]byte{d.Body, other.Body} {
		got, err := s.DeliveryBody(ctx, "c", j.Deliveries[i].ID)
		if err != nil || string(got) != string(body) {
			t.Errorf("body of delivery %d: %q %v; want %q", i+1, got, err, body)
		}
	}
	if _, err := s.DeliveryBody(ctx, "a", j.Deliveries[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("c's delivery asked of a: %v; want ErrNotFound", err)
	}
}

// A replay longer than one chunk queues every job after the cursor, each
// once.
func TestForwardReplayInChunks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	const jobs = replayChunk*2 + 3
	queueBacklog(t, s, jobs, 0)
	if _, err := s.pool.Exec(ctx, `DELETE FROM forwards WHERE seq % 2 = 0`); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	n, err := s.ReplayForwards(ctx, later, 2)
	if err != nil || n != jobs-2 {
		t.Fatalf("replay after 2: %d, %v; want %d", n, err, jobs-2)
	}
	var queued, due int
	if err := s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE next_attempt_at = $1 AND state = 'pending')
		FROM forwards WHERE seq > 2`, later.UnixNano()).Scan(&queued, &due); err != nil {
		t.Fatal(err)
	}
	if queued != jobs-2 || due != jobs-2 {
		t.Errorf("after the replay: %d forwards after seq 2, %d due at the replay; want %d", queued, due, jobs-2)
	}
}
