package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// The forwarding queue's tests pass their own times to the queue's methods
// (claims, results, retries), so leases and schedules move without
// sleeping; a forward queued by a job's end is due at the job's end, by the
// store's clock, which these tests read back from the job.

// lease is the lease the tests claim with unless they test leases.
const lease = time.Minute

// sameTime compares times at the precision every backend keeps.
func sameTime(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameTime(*a, *b)
}

// forwardOf returns the job's forward, failing the test when it has none.
func forwardOf(t *testing.T, s store.Store, id string) store.Forward {
	t.Helper()
	j, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	if j.Forward == nil {
		t.Fatalf("Job(%s): no forward, want one", id)
	}
	return *j.Forward
}

// claim claims and fails the test on an error.
func claim(t *testing.T, s store.Store, now time.Time, n int, ordered bool) []store.ForwardClaim {
	t.Helper()
	c, err := s.ClaimForwards(context.Background(), now, n, lease, ordered)
	if err != nil {
		t.Fatalf("ClaimForwards: %v", err)
	}
	return c
}

// claimedIDs lists the claims' job ids, in the order given.
func claimedIDs(claims []store.ForwardClaim) string {
	ids := make([]string, len(claims))
	for i, c := range claims {
		ids[i] = c.Job.JobID
	}
	return strings.Join(ids, ",")
}

// claimOne claims the forward of the job id, which must be the only one
// due at now.
func claimOne(t *testing.T, s store.Store, now time.Time, id string) store.ForwardClaim {
	t.Helper()
	c := claim(t, s, now, 10, false)
	if claimedIDs(c) != id {
		t.Fatalf("claim at %s: got [%s], want [%s]", now.Format(time.RFC3339Nano), claimedIDs(c), id)
	}
	return c[0]
}

// finish records r for c and returns ok, failing the test on an error.
func finish(t *testing.T, s store.Store, c store.ForwardClaim, r store.ForwardResult) bool {
	t.Helper()
	ok, err := s.FinishForward(context.Background(), c, r)
	if err != nil {
		t.Fatalf("FinishForward(%s): %v", c.Job.JobID, err)
	}
	return ok
}

// delivered is the result of an attempt the app answered 200 at at.
func delivered(at time.Time) store.ForwardResult {
	return store.ForwardResult{At: at, Took: 12 * time.Millisecond, Status: 200, State: store.ForwardDelivered}
}

// endedAt returns when the job ended, failing the test if it has not.
func endedAt(t *testing.T, s store.Store, id string) time.Time {
	t.Helper()
	j, err := s.Job(context.Background(), id)
	if err != nil || j.TerminalAt == nil {
		t.Fatalf("Job(%s): got %+v, %v; want it ended", id, j, err)
	}
	return *j.TerminalAt
}

// testForwardQueuedOnceWhenAJobEnds: with forwarding on, each way a job
// ends (webhook, poll, not_found, expiry) queues one forward, due at the
// job's end, in the same commit; a later delivery or poll of the ended job
// queues nothing again, and a job not ended has none.
func testForwardQueuedOnceWhenAJobEnds(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"polled", "gone", "old", "open"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	deliver(t, s, report("hooked", "completed"))
	if out, err := s.RecordPoll(ctx, "polled", store.PollResult{Report: report("polled", "failed")}); err != nil || out != store.OutcomeAccepted {
		t.Fatalf("terminal poll: got %s, %v", out, err)
	}
	if out, err := s.RecordPoll(ctx, "gone", store.PollResult{NotFound: true, End: store.StatusNotFound, Err: "404"}); err != nil || out != store.OutcomeAccepted {
		t.Fatalf("not_found end: got %s, %v", out, err)
	}
	if _, _, err := s.Track(ctx, "young", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.ExpireJobs(ctx, cutoff); err != nil || fmt.Sprint(ids) != "[old open]" {
		t.Fatalf("ExpireJobs: got %v, %v; want [old open]", ids, err)
	}
	if j, err := s.Job(ctx, "young"); err != nil || j.Forward != nil {
		t.Fatalf("a job not ended: got forward %+v, %v; want none", j.Forward, err)
	}
	ended := []string{"hooked", "polled", "gone", "old", "open"} // in seq order
	for _, id := range ended {
		f := forwardOf(t, s, id)
		at := endedAt(t, s, id)
		if f.State != store.ForwardPending || f.Attempts != 0 || f.LastStatus != 0 || f.LastError != "" ||
			!sameTimePtr(f.NextAttemptAt, &at) || f.DeliveredAt != nil {
			t.Errorf("%s: got forward %+v, want pending, no attempts, due at its end %s", id, f, at)
		}
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardPending] != 5 || st.Depth != 5 {
		t.Fatalf("ForwardStats: got %+v, %v; want 5 pending", st, err)
	}
	// Every later report of an ended job is a duplicate or a conflict, and
	// queues nothing: deliver the forwards, then report the ends again.
	now := time.Now().Add(time.Second)
	claims := claim(t, s, now, 10, false)
	if claimedIDs(claims) != strings.Join(ended, ",") {
		t.Fatalf("claim: got [%s], want [%s], in seq order", claimedIDs(claims), strings.Join(ended, ","))
	}
	for _, c := range claims {
		if !finish(t, s, c, delivered(now)) {
			t.Fatalf("finish %s: refused", c.Job.JobID)
		}
	}
	if got := deliver(t, s, report("hooked", "completed")); got != store.OutcomeDuplicate {
		t.Fatalf("duplicate delivery: got %s", got)
	}
	if got := deliver(t, s, report("hooked", "failed")); got != store.OutcomeConflict {
		t.Fatalf("conflicting delivery: got %s", got)
	}
	if got := deliver(t, s, report("gone", "completed")); got != store.OutcomeConflict {
		t.Fatalf("delivery after not_found: got %s", got)
	}
	if out, err := s.RecordPoll(ctx, "polled", store.PollResult{Report: report("polled", "failed")}); err != nil || out != store.OutcomeDuplicate {
		t.Fatalf("second terminal poll: got %s, %v", out, err)
	}
	if ids, err := s.ExpireJobs(ctx, time.Now()); err != nil || fmt.Sprint(ids) != "[young]" {
		t.Fatalf("second ExpireJobs: got %v, %v; want [young]", ids, err)
	}
	for _, id := range ended {
		if f := forwardOf(t, s, id); f.State != store.ForwardDelivered || f.Attempts != 1 {
			t.Errorf("%s after later reports: got %+v, want still delivered after 1 attempt", id, f)
		}
	}
	st, err = s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardDelivered] != 5 || st.ByState[store.ForwardPending] != 1 || st.Depth != 1 {
		t.Fatalf("ForwardStats after later reports: got %+v, %v; want 5 delivered, young pending", st, err)
	}
	if c := claim(t, s, time.Now().Add(time.Second), 10, false); claimedIDs(c) != "young" {
		t.Fatalf("claim after later reports: got [%s], want [young] alone", claimedIDs(c))
	}
}

// testForwardQueuedOnceUnderRacingEnds: webhooks, polls and an expiry
// sweep racing to end the same jobs queue one forward per job, due at the
// end that won, in the order of the feed.
func testForwardQueuedOnceUnderRacingEnds(t *testing.T, s store.Store) {
	ctx := context.Background()
	const jobs = 20
	id := func(i int) string { return fmt.Sprintf("race-%02d", i) }
	for i := range jobs {
		if _, _, err := s.Track(ctx, id(i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() { deliver(t, s, report(id(i), "completed")) })
		wg.Go(func() { deliver(t, s, report(id(i), "failed")) })
		wg.Go(func() {
			if _, err := s.RecordPoll(ctx, id(i), store.PollResult{Report: report(id(i), "completed")}); err != nil {
				t.Error(err)
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			if _, err := s.ExpireJobs(ctx, cutoff); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := s.ForwardStats(ctx)
	if err != nil || st.ByState[store.ForwardPending] != jobs || st.Depth != jobs {
		t.Fatalf("ForwardStats: got %+v, %v; want %d pending, one per job", st, err, jobs)
	}
	events, _, err := s.Events(ctx, 0, store.MaxLimit)
	if err != nil || len(events) != jobs {
		t.Fatalf("Events: got %d, %v", len(events), err)
	}
	fs, _, err := s.ListForwards(ctx, store.ForwardFilter{Limit: store.MaxLimit})
	if err != nil || len(fs) != jobs {
		t.Fatalf("ListForwards: got %d, %v; want %d", len(fs), err, jobs)
	}
	for i, e := range events {
		f := fs[i]
		if f.JobID != e.JobID || f.Seq != e.Seq || e.Forward == nil || f.State != store.ForwardPending ||
			!sameTimePtr(f.NextAttemptAt, e.TerminalAt) || !sameTime(f.EnqueuedAt, *e.TerminalAt) {
			t.Errorf("forward %d: got %+v, want %s's at seq %d, due at its end %v", i, f, e.JobID, e.Seq, e.TerminalAt)
		}
	}
	if c := claim(t, s, time.Now().Add(time.Second), store.MaxLimit, false); len(c) != jobs {
		t.Fatalf("claim: got %d, want %d", len(c), jobs)
	}
}

// testForwardOffQueuesOnlyOnReplayOrRetry: with forwarding off a job's end
// queues nothing; a replay or a retry still queues forwards, creating them.
func testForwardOffQueuesOnlyOnReplayOrRetry(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		deliver(t, s, report(id, "completed"))
	}
	if _, err := s.RecordPoll(ctx, "d", store.PollResult{Report: report("d", "completed")}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if j, err := s.Job(ctx, id); err != nil || j.Forward != nil {
			t.Fatalf("%s with forwarding off: got forward %+v, %v; want none", id, j.Forward, err)
		}
	}
	st, err := s.ForwardStats(ctx)
	want := store.ForwardStats{ByState: map[store.ForwardState]int{store.ForwardPending: 0, store.ForwardDelivered: 0,
		store.ForwardFailed: 0, store.ForwardPaused: 0}}
	if err != nil || fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("ForwardStats with forwarding off:\ngot  %+v, %v\nwant %+v", st, err, want)
	}
	if c := claim(t, s, time.Now().Add(time.Hour), 10, false); len(c) != 0 {
		t.Fatalf("claim with nothing queued: got [%s]", claimedIDs(c))
	}
	if _, ok, err := s.NextForwardAt(ctx); err != nil || ok {
		t.Fatalf("NextForwardAt with nothing queued: got ok=%v, %v", ok, err)
	}
	now := time.Now().Truncate(time.Millisecond)
	if n, err := s.RetryForwards(ctx, now, []string{"b"}); err != nil || n != 1 {
		t.Fatalf("RetryForwards(b): got %d, %v; want 1", n, err)
	}
	if n, err := s.ReplayForwards(ctx, now, 2); err != nil || n != 2 {
		t.Fatalf("ReplayForwards(after 2): got %d, %v; want 2 (c and d)", n, err)
	}
	for id, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true} {
		j, err := s.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if (j.Forward != nil) != want {
			t.Errorf("%s: got forward %+v, want one: %v", id, j.Forward, want)
			continue
		}
		if want && (j.Forward.State != store.ForwardPending || !sameTimePtr(j.Forward.NextAttemptAt, &now)) {
			t.Errorf("%s: got forward %+v, want pending, due at the retry or replay", id, j.Forward)
		}
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !sameTime(next, now) {
		t.Fatalf("NextForwardAt: got %s, %v, %v; want %s", next, ok, err, now)
	}
	if c := claim(t, s, now, 10, false); claimedIDs(c) != "b,c,d" {
		t.Fatalf("claim: got [%s], want [b,c,d]", claimedIDs(c))
	}
}

// testForwardClaimLeaseAndToken: a claim leases its forward, so no second
// claim takes it until the lease runs out; a claim made then has a new
// token, and the result of the first is refused. NextForwardAt is the due
// time, or the lease's end while leased.
func testForwardClaimLeaseAndToken(t *testing.T, s store.Store) {
	ctx := context.Background()
	deliver(t, s, report("a", "completed"))
	due := endedAt(t, s, "a")
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !sameTime(next, due) {
		t.Fatalf("NextForwardAt: got %s, %v, %v; want the end, %s", next, ok, err, due)
	}
	if c := claim(t, s, due.Add(-time.Millisecond), 10, false); len(c) != 0 {
		t.Fatalf("claim before due: got [%s]", claimedIDs(c))
	}
	now := due.Add(time.Second)
	first := claimOne(t, s, now, "a")
	if first.Attempt != 1 || first.Job.Seq != 1 || first.Job.Status != "completed" || len(first.Job.Projects) != 1 ||
		first.Job.Forward == nil || first.Job.Forward.State != store.ForwardPending {
		t.Fatalf("claim: got %+v, want attempt 1 of the whole job, its forward pending", first)
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !sameTime(next, now.Add(lease)) {
		t.Fatalf("NextForwardAt while leased: got %s, %v, %v; want the lease's end %s", next, ok, err, now.Add(lease))
	}
	if c := claim(t, s, now.Add(lease-time.Millisecond), 10, false); len(c) != 0 {
		t.Fatalf("claim within the lease: got [%s]", claimedIDs(c))
	}
	second := claimOne(t, s, now.Add(lease), "a") // the first forwarder died mid-send
	if second.Attempt != 1 || second.Token == first.Token {
		t.Fatalf("claim after the lease: got attempt %d token %d (first's %d), want attempt 1, a new token",
			second.Attempt, second.Token, first.Token)
	}
	if finish(t, s, first, delivered(now.Add(lease))) {
		t.Fatal("the first claim's result was recorded after its forward was claimed again")
	}
	if f := forwardOf(t, s, "a"); f.State != store.ForwardPending || f.Attempts != 0 {
		t.Fatalf("after a stale result: got %+v, want pending, no attempt recorded", f)
	}
	if a, err := s.ForwardAttempts(ctx, "a"); err != nil || len(a) != 0 {
		t.Fatalf("ForwardAttempts after a stale result: got %+v, %v; want none", a, err)
	}
	retryAt := now.Add(lease + 5*time.Minute)
	if !finish(t, s, second, store.ForwardResult{At: now.Add(lease + time.Second), Took: time.Second, Status: 503,
		Err: "app answered 503", State: store.ForwardPending, Next: retryAt}) {
		t.Fatal("the second claim's result was refused")
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !sameTime(next, retryAt) {
		t.Fatalf("NextForwardAt after a retry is scheduled: got %s, %v, %v; want %s", next, ok, err, retryAt)
	}
	if c := claim(t, s, retryAt.Add(-time.Millisecond), 10, false); len(c) != 0 {
		t.Fatalf("claim before the retry is due: got [%s]", claimedIDs(c))
	}
	third := claimOne(t, s, retryAt, "a")
	if third.Attempt != 2 || third.Token == second.Token || third.Token == first.Token {
		t.Fatalf("claim of the retry: got attempt %d token %d, want attempt 2 and a new token", third.Attempt, third.Token)
	}
	if !finish(t, s, third, delivered(retryAt)) {
		t.Fatal("the third claim's result was refused")
	}
	if _, ok, err := s.NextForwardAt(ctx); err != nil || ok {
		t.Fatalf("NextForwardAt with none pending: got ok=%v, %v", ok, err)
	}
	if c := claim(t, s, retryAt.Add(time.Hour), 10, false); len(c) != 0 {
		t.Fatalf("claim after delivery: got [%s]", claimedIDs(c))
	}
	// A claim takes at most n, lowest seq first.
	for _, id := range []string{"b", "c", "d"} {
		deliver(t, s, report(id, "completed"))
	}
	later := time.Now().Add(time.Second)
	if c := claim(t, s, later, 2, false); claimedIDs(c) != "b,c" {
		t.Fatalf("claim 2: got [%s], want [b,c]", claimedIDs(c))
	}
	if c := claim(t, s, later, 2, false); claimedIDs(c) != "d" {
		t.Fatalf("claim 2 again: got [%s], want [d]", claimedIDs(c))
	}
}

// testForwardClaimPassesABacklogInRetry: when the lowest seqs wait out a
// retry, a claim still takes the due forwards after them, lowest seq first,
// a forward whose lease ran out among them.
func testForwardClaimPassesABacklogInRetry(t *testing.T, s store.Store) {
	const jobs = 100
	for i := 1; i <= jobs; i++ {
		deliver(t, s, report(fmt.Sprintf("j%03d", i), "completed"))
	}
	now := time.Now().Add(time.Second)
	all := claim(t, s, now, jobs, false)
	if len(all) != jobs {
		t.Fatalf("claim of %d: got %d", jobs, len(all))
	}
	soon, later := now.Add(time.Second), now.Add(time.Hour)
	for i, c := range all {
		next := soon
		switch {
		case i < 80:
			next = later
		case i == 89:
			continue // its lease runs out at now+lease
		}
		finish(t, s, c, store.ForwardResult{At: now, Status: 503, Err: "app answered 503", State: store.ForwardPending, Next: next})
	}
	at := now.Add(lease)
	if got := claimedIDs(claim(t, s, at, 5, false)); got != "j081,j082,j083,j084,j085" {
		t.Fatalf("claim 5 behind 80 in retry: got [%s]", got)
	}
	if got := claimedIDs(claim(t, s, at, 10, false)); got != "j086,j087,j088,j089,j090,j091,j092,j093,j094,j095" {
		t.Fatalf("claim 10 more: got [%s], want j090, whose lease ran out, in its place", got)
	}
	if got := claim(t, s, at, 10, true); len(got) != 0 {
		t.Fatalf("ordered claim while j001 waits: got [%s], want none", claimedIDs(got))
	}
}

// testForwardResultsAndAttempts: each result state is recorded as the
// design says, and every recorded attempt is in the job's attempt log.
func testForwardResultsAndAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	deliver(t, s, report("a", "completed"))
	deliver(t, s, report("b", "completed"))
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 10, false)
	if claimedIDs(c) != "a,b" {
		t.Fatalf("claim: got [%s]", claimedIDs(c))
	}
	// b: the schedule runs out.
	finish(t, s, c[1], store.ForwardResult{At: now, Took: time.Millisecond, Status: 404, Err: "app answered 404",
		State: store.ForwardFailed})
	// a: a timeout, a 500, then a 204.
	next := now.Add(10 * time.Second)
	finish(t, s, c[0], store.ForwardResult{At: now.Add(5 * time.Second), Took: 5 * time.Second, Err: "timeout after 5s",
		State: store.ForwardPending, Next: next})
	f := forwardOf(t, s, "a")
	if f.State != store.ForwardPending || f.Attempts != 1 || f.LastStatus != 0 || f.LastError != "timeout after 5s" ||
		!sameTimePtr(f.NextAttemptAt, &next) || f.DeliveredAt != nil {
		t.Fatalf("a after a timeout: got %+v", f)
	}
	a2 := claimOne(t, s, next, "a")
	next3 := next.Add(time.Minute)
	finish(t, s, a2, store.ForwardResult{At: next.Add(time.Second), Took: 1500 * time.Millisecond, Status: 500,
		Err: "app answered 500", State: store.ForwardPending, Next: next3})
	a3 := claimOne(t, s, next3, "a")
	if a3.Attempt != 3 {
		t.Fatalf("third claim: got attempt %d, want 3", a3.Attempt)
	}
	doneAt := next3.Add(time.Second)
	finish(t, s, a3, store.ForwardResult{At: doneAt, Took: 80 * time.Millisecond, Status: 204, State: store.ForwardDelivered})
	f = forwardOf(t, s, "a")
	if f.State != store.ForwardDelivered || f.Attempts != 3 || f.LastStatus != 204 || f.LastError != "" ||
		f.NextAttemptAt != nil || !sameTimePtr(f.DeliveredAt, &doneAt) {
		t.Fatalf("a delivered: got %+v, want delivered after 3 attempts at %s, no next", f, doneAt)
	}
	attempts, err := s.ForwardAttempts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, a := range attempts {
		got += fmt.Sprintf("%d +%s %dms %d %q %s; ", a.Attempt, a.At.Sub(now), a.TookMs, a.Status, a.Error, a.State)
	}
	want := `1 +5s 5000ms 0 "timeout after 5s" pending; 2 +11s 1500ms 500 "app answered 500" pending; 3 +1m11s 80ms 204 "" delivered; `
	if got != want {
		t.Fatalf("ForwardAttempts(a):\ngot  %s\nwant %s", got, want)
	}
	f = forwardOf(t, s, "b")
	if f.State != store.ForwardFailed || f.Attempts != 1 || f.LastStatus != 404 || f.LastError != "app answered 404" ||
		f.NextAttemptAt != nil || f.DeliveredAt != nil {
		t.Fatalf("b failed: got %+v", f)
	}
	if c := claim(t, s, now.Add(time.Hour), 10, false); len(c) != 0 {
		t.Fatalf("claim with only delivered and failed forwards: got [%s]", claimedIDs(c))
	}
	if a, err := s.ForwardAttempts(ctx, "b"); err != nil || len(a) != 1 || a[0].State != store.ForwardFailed {
		t.Fatalf("ForwardAttempts(b): got %+v, %v", a, err)
	}
	if _, err := s.ForwardAttempts(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ForwardAttempts of an unknown job: got %v, want ErrNotFound", err)
	}
	// The attempt log keeps the last MaxDeliveries attempts.
	deliver(t, s, report("many", "completed"))
	at := time.Now().Add(time.Second)
	for i := 1; i <= store.MaxDeliveries+3; i++ {
		c := claimOne(t, s, at, "many")
		at = at.Add(time.Second)
		finish(t, s, c, store.ForwardResult{At: at, Status: 500, Err: fmt.Sprint("try ", i), State: store.ForwardPending, Next: at})
	}
	attempts, err = s.ForwardAttempts(ctx, "many")
	if err != nil || len(attempts) != store.MaxDeliveries || attempts[0].Attempt != 4 ||
		attempts[len(attempts)-1].Attempt != store.MaxDeliveries+3 || attempts[0].Error != "try 4" {
		t.Fatalf("ForwardAttempts after %d: got %d (first %+v), %v; want the last %d, oldest first",
			store.MaxDeliveries+3, len(attempts), attempts[0], err, store.MaxDeliveries)
	}
}

// testForwardPauseAndResume: a 410 pauses all forwarding: nothing is
// claimed and nothing is due until a resume, which makes the paused
// forward pending again, due at the resume.
func testForwardPauseAndResume(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 2, false)
	const reason = "app answered 410 Gone at https://app.example/hook"
	if !finish(t, s, c[0], store.ForwardResult{At: now, Status: 410, Err: reason, State: store.ForwardPaused}) {
		t.Fatal("the 410 was refused")
	}
	if f := forwardOf(t, s, "a"); f.State != store.ForwardPaused || f.Attempts != 1 || f.LastStatus != 410 ||
		f.LastError != reason || f.NextAttemptAt != nil {
		t.Fatalf("a after a 410: got %+v, want paused with the 410", f)
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || !st.Paused || st.PauseReason != reason || st.ByState[store.ForwardPaused] != 1 ||
		st.ByState[store.ForwardPending] != 2 || st.Depth != 3 {
		t.Fatalf("ForwardStats paused: got %+v, %v; want paused with the reason, 1 paused, 2 pending", st, err)
	}
	if c := claim(t, s, now.Add(time.Hour), 10, false); len(c) != 0 {
		t.Fatalf("claim while paused: got [%s]", claimedIDs(c))
	}
	if c := claim(t, s, now.Add(time.Hour), 10, true); len(c) != 0 {
		t.Fatalf("ordered claim while paused: got [%s]", claimedIDs(c))
	}
	if _, ok, err := s.NextForwardAt(ctx); err != nil || ok {
		t.Fatalf("NextForwardAt while paused: got ok=%v, %v; want none", ok, err)
	}
	// b's attempt was in flight when a's 410 came: it still records.
	if !finish(t, s, c[1], delivered(now)) {
		t.Fatal("a result in flight during the pause was refused")
	}
	resumeAt := now.Add(time.Minute)
	if err := s.ResumeForwarding(ctx, resumeAt); err != nil {
		t.Fatal(err)
	}
	st, err = s.ForwardStats(ctx)
	if err != nil || st.Paused || st.PauseReason != "" || st.ByState[store.ForwardPaused] != 0 || st.ByState[store.ForwardPending] != 2 {
		t.Fatalf("ForwardStats resumed: got %+v, %v; want not paused, a and c pending", st, err)
	}
	if f := forwardOf(t, s, "a"); f.State != store.ForwardPending || f.Attempts != 1 || !sameTimePtr(f.NextAttemptAt, &resumeAt) {
		t.Fatalf("a resumed: got %+v, want pending due at the resume, its attempt kept", f)
	}
	if err := s.ResumeForwarding(ctx, resumeAt); err != nil {
		t.Fatalf("resume when not paused: %v", err)
	}
	if c := claim(t, s, resumeAt, 10, false); claimedIDs(c) != "a,c" {
		t.Fatalf("claim after resume: got [%s], want [a,c]", claimedIDs(c))
	}
}

// testForwardOrderedClaims: an ordered claim takes only the lowest pending
// seq; leased or not yet due, it holds every later one; failed, it does
// not.
func testForwardOrderedClaims(t *testing.T, s store.Store) {
	for _, id := range []string{"a", "b", "c"} {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second)
	first := claim(t, s, now, 5, true)
	if claimedIDs(first) != "a" {
		t.Fatalf("ordered claim of 5: got [%s], want [a] alone", claimedIDs(first))
	}
	if c := claim(t, s, now, 5, true); len(c) != 0 {
		t.Fatalf("ordered claim while a is leased: got [%s], want none", claimedIDs(c))
	}
	retryAt := now.Add(time.Hour)
	finish(t, s, first[0], store.ForwardResult{At: now, Status: 500, Err: "app answered 500", State: store.ForwardPending, Next: retryAt})
	if c := claim(t, s, now.Add(time.Minute), 5, true); len(c) != 0 {
		t.Fatalf("ordered claim while a is not yet due: got [%s], want none", claimedIDs(c))
	}
	a := claim(t, s, retryAt, 5, true)
	if claimedIDs(a) != "a" || a[0].Attempt != 2 {
		t.Fatalf("ordered claim when a is due: got [%s], want [a] attempt 2", claimedIDs(a))
	}
	finish(t, s, a[0], store.ForwardResult{At: retryAt, Status: 500, Err: "app answered 500", State: store.ForwardFailed})
	b := claim(t, s, retryAt, 5, true)
	if claimedIDs(b) != "b" {
		t.Fatalf("ordered claim after a failed: got [%s], want [b]", claimedIDs(b))
	}
	// Once its lease runs out the lowest is claimed again, before the rest.
	if c := claim(t, s, retryAt.Add(lease), 5, true); claimedIDs(c) != "b" {
		t.Fatalf("ordered claim after b's lease: got [%s], want [b]", claimedIDs(c))
	}
}

// testForwardRetryAllOrNothing: a retry names ended jobs only; one unknown
// or not ended job refuses the whole retry. A retry resets the attempts,
// keeps when the app last took it, fences off an attempt in flight, and
// ends a pause.
func testForwardRetryAllOrNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"done", "dead", "flying", "gone"} {
		deliver(t, s, report(id, "completed"))
	}
	if _, _, err := s.Track(ctx, "open", time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 10, false)
	if claimedIDs(c) != "done,dead,flying,gone" {
		t.Fatalf("claim: got [%s]", claimedIDs(c))
	}
	finish(t, s, c[0], delivered(now))
	finish(t, s, c[1], store.ForwardResult{At: now, Status: 500, Err: "app answered 500", State: store.ForwardFailed})
	finish(t, s, c[3], store.ForwardResult{At: now, Status: 410, Err: "app answered 410", State: store.ForwardPaused})
	flying := c[2]
	before := map[string]store.Forward{}
	for _, id := range []string{"done", "dead", "flying", "gone"} {
		before[id] = forwardOf(t, s, id)
	}
	unchanged := func(what string) {
		t.Helper()
		for id, f := range before {
			if got := forwardOf(t, s, id); fmt.Sprint(got) != fmt.Sprint(f) {
				t.Errorf("%s changed %s's forward: got %+v, was %+v", what, id, got, f)
			}
		}
		if st, err := s.ForwardStats(ctx); err != nil || !st.Paused {
			t.Errorf("%s ended the pause: %+v, %v", what, st, err)
		}
	}
	retryAt := now.Add(time.Minute)
	if n, err := s.RetryForwards(ctx, retryAt, []string{"dead", "nope"}); !errors.Is(err, store.ErrNotFound) || n != 0 {
		t.Fatalf("retry with an unknown job: got %d, %v; want ErrNotFound", n, err)
	}
	unchanged("a retry with an unknown job")
	if n, err := s.RetryForwards(ctx, retryAt, []string{"dead", "open"}); !errors.Is(err, store.ErrInvalid) || n != 0 {
		t.Fatalf("retry with a job not ended: got %d, %v; want ErrInvalid", n, err)
	}
	unchanged("a retry with a job not ended")

	n, err := s.RetryForwards(ctx, retryAt, []string{"dead", "done", "flying", "dead"})
	if err != nil || n != 3 {
		t.Fatalf("retry: got %d, %v; want 3", n, err)
	}
	for _, id := range []string{"dead", "done", "flying"} {
		f := forwardOf(t, s, id)
		if f.State != store.ForwardPending || f.Attempts != 0 || f.LastStatus != 0 || f.LastError != "" ||
			!sameTimePtr(f.NextAttemptAt, &retryAt) || !sameTimePtr(f.DeliveredAt, before[id].DeliveredAt) {
			t.Errorf("%s retried: got %+v, want pending due at the retry, attempts reset, delivered at kept (%v)",
				id, f, before[id].DeliveredAt)
		}
	}
	if finish(t, s, flying, delivered(retryAt)) {
		t.Error("an attempt in flight during a retry recorded its result")
	}
	st, err := s.ForwardStats(ctx)
	if err != nil || st.Paused || st.ByState[store.ForwardPaused] != 0 || st.ByState[store.ForwardPending] != 4 {
		t.Fatalf("ForwardStats after the retry: got %+v, %v; want the pause ended and every forward pending", st, err)
	}
	if f := forwardOf(t, s, "gone"); f.State != store.ForwardPending || !sameTimePtr(f.NextAttemptAt, &retryAt) {
		t.Errorf("the paused forward after a retry: got %+v, want pending due at the retry", f)
	}
	if got := claim(t, s, retryAt, 10, false); claimedIDs(got) != "done,dead,flying,gone" || got[0].Attempt != 1 {
		t.Fatalf("claim after the retry: got [%s], want all four, attempt 1", claimedIDs(got))
	}
	if n, err := s.RetryForwards(ctx, retryAt, nil); err != nil || n != 0 {
		t.Fatalf("retry of none: got %d, %v; want 0", n, err)
	}
}

// testForwardReplay: a replay queues every job after a seq again, whatever
// its state, and leaves the rest.
func testForwardReplay(t *testing.T, s store.Store) {
	ctx := context.Background()
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 10, false)
	finish(t, s, c[0], delivered(now))
	finish(t, s, c[1], delivered(now))
	finish(t, s, c[2], store.ForwardResult{At: now, Status: 500, State: store.ForwardFailed, Err: "app answered 500"})
	if _, err := s.ReplayForwards(ctx, now, -1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("replay after -1: got %v, want ErrInvalid", err)
	}
	replayAt := now.Add(time.Minute)
	n, err := s.ReplayForwards(ctx, replayAt, 1)
	if err != nil || n != 3 {
		t.Fatalf("replay after 1: got %d, %v; want 3", n, err)
	}
	if f := forwardOf(t, s, "a"); f.State != store.ForwardDelivered {
		t.Errorf("a, before the replay's seq: got %+v, want still delivered", f)
	}
	for _, id := range ids[1:] {
		if f := forwardOf(t, s, id); f.State != store.ForwardPending || f.Attempts != 0 || !sameTimePtr(f.NextAttemptAt, &replayAt) {
			t.Errorf("%s replayed: got %+v, want pending due at the replay, attempts reset", id, f)
		}
	}
	if finish(t, s, c[3], delivered(now)) {
		t.Error("an attempt in flight during a replay recorded its result")
	}
	if n, err := s.ReplayForwards(ctx, replayAt, 4); err != nil || n != 0 {
		t.Fatalf("replay after the last seq: got %d, %v; want 0", n, err)
	}
	if got := claim(t, s, replayAt, 10, false); claimedIDs(got) != "b,c,d" {
		t.Fatalf("claim after the replay: got [%s], want [b,c,d]", claimedIDs(got))
	}
}

// testForwardStats: counts by state (every state present), the depth, the
// oldest waiting forward and the pause.
func testForwardStats(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 3, false) // a, b, c
	finish(t, s, c[0], delivered(now))
	finish(t, s, c[1], store.ForwardResult{At: now, Status: 500, State: store.ForwardFailed, Err: "app answered 500"})
	st, err := s.ForwardStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldest := endedAt(t, s, "c") // c is leased, and still pending
	want := fmt.Sprint(store.ForwardStats{ByState: map[store.ForwardState]int{store.ForwardPending: 3,
		store.ForwardDelivered: 1, store.ForwardFailed: 1, store.ForwardPaused: 0}, Depth: 3})
	if st.OldestPending == nil || !sameTime(*st.OldestPending, oldest) {
		t.Errorf("OldestPending: got %v, want c's end %s", st.OldestPending, oldest)
	}
	st.OldestPending = nil
	if fmt.Sprint(st) != want {
		t.Errorf("ForwardStats:\ngot  %+v\nwant %s", st, want)
	}
	// A retry queues b again, now: c stays the oldest waiting.
	if _, err := s.RetryForwards(ctx, now.Add(time.Hour), []string{"b"}); err != nil {
		t.Fatal(err)
	}
	finish(t, s, c[2], store.ForwardResult{At: now, Status: 410, State: store.ForwardPaused, Err: "gone"})
	st, err = s.ForwardStats(ctx)
	if err != nil || !st.Paused || st.PauseReason != "gone" || st.Depth != 4 || st.ByState[store.ForwardPaused] != 1 ||
		st.OldestPending == nil || !sameTime(*st.OldestPending, oldest) {
		t.Fatalf("ForwardStats with c paused: got %+v, %v; want paused, depth 4, oldest c's end", st, err)
	}
	// With only b waiting, the oldest is its retry.
	for _, c := range claim(t, s, now.Add(2*time.Hour), 10, false) {
		t.Fatalf("claim while paused: got %s", c.Job.JobID)
	}
	if err := s.ResumeForwarding(ctx, now); err != nil {
		t.Fatal(err)
	}
	for _, c := range claim(t, s, now.Add(2*time.Hour), 10, false) {
		if c.Job.JobID != "b" {
			finish(t, s, c, delivered(now))
		}
	}
	st, err = s.ForwardStats(ctx)
	retried := now.Add(time.Hour)
	if err != nil || st.Depth != 1 || st.OldestPending == nil || !sameTime(*st.OldestPending, retried) {
		t.Fatalf("ForwardStats with only b waiting: got %+v, %v; want depth 1, oldest at b's retry %s", st, err, retried)
	}
}

// testForwardListPages: the queue lists failed, paused, pending, then
// delivered, each by seq; pages of any size add up to the whole list; a
// state filter keeps those states in that order.
func testForwardListPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	// seq:   1 2 3 4 5 6 7 8 9
	// state: D F P p D F p P(aused) p  (D delivered, F failed, p pending)
	ids := []string{"j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8", "j9"}
	for _, id := range ids {
		deliver(t, s, report(id, "completed"))
	}
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	c := claim(t, s, now, 10, false)
	for _, i := range []int{0, 4} {
		finish(t, s, c[i], delivered(now))
	}
	for _, i := range []int{1, 5} {
		finish(t, s, c[i], store.ForwardResult{At: now, Status: 500, State: store.ForwardFailed, Err: "app answered 500"})
	}
	for _, i := range []int{3, 6, 8} {
		finish(t, s, c[i], store.ForwardResult{At: now, Status: 500, State: store.ForwardPending, Err: "app answered 500", Next: now.Add(time.Hour)})
	}
	finish(t, s, c[2], store.ForwardResult{At: now, Status: 410, State: store.ForwardPaused, Err: "gone"})
	finish(t, s, c[7], store.ForwardResult{At: now, Status: 410, State: store.ForwardPaused, Err: "gone"})
	// j3 and j8 paused; j4, j7, j9 pending.
	list := func(states []store.ForwardState, limit int) string {
		t.Helper()
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			fs, next, err := s.ListForwards(ctx, store.ForwardFilter{States: states, Limit: limit, Cursor: cursor})
			if err != nil {
				t.Fatalf("ListForwards(%v, limit %d, page %d): %v", states, limit, page, err)
			}
			if len(fs) > limit || (next != "" && len(fs) != limit) {
				t.Fatalf("ListForwards(%v, limit %d, page %d): %d forwards, next %q", states, limit, page, len(fs), next)
			}
			for _, f := range fs {
				got = append(got, fmt.Sprintf("%s:%d:%s", f.JobID, f.Seq, f.State))
			}
			if next == "" {
				return strings.Join(got, " ")
			}
			if page > 20 {
				t.Fatalf("ListForwards(%v, limit %d): no end after 20 pages", states, limit)
			}
			cursor = next
		}
	}
	all := "j2:2:failed j6:6:failed j3:3:paused j8:8:paused j4:4:pending j7:7:pending j9:9:pending j1:1:delivered j5:5:delivered"
	for _, limit := range []int{1, 2, 3, 4, 9, store.MaxLimit} {
		if got := list(nil, limit); got != all {
			t.Errorf("ListForwards limit %d:\ngot  %s\nwant %s", limit, got, all)
		}
	}
	for _, tc := range []struct {
		states []store.ForwardState
		want   string
	}{
		{[]store.ForwardState{store.ForwardPending}, "j4:4:pending j7:7:pending j9:9:pending"},
		{[]store.ForwardState{store.ForwardDelivered, store.ForwardFailed}, "j2:2:failed j6:6:failed j1:1:delivered j5:5:delivered"},
		{[]store.ForwardState{store.ForwardPaused, store.ForwardPending}, "j3:3:paused j8:8:paused j4:4:pending j7:7:pending j9:9:pending"},
	} {
		for _, limit := range []int{1, 2, 10} {
			if got := list(tc.states, limit); got != tc.want {
				t.Errorf("ListForwards(%v) limit %d:\ngot  %s\nwant %s", tc.states, limit, got, tc.want)
			}
		}
	}
	// An entry has the forward and when it was queued.
	fs, _, err := s.ListForwards(ctx, store.ForwardFilter{States: []store.ForwardState{store.ForwardPending}, Limit: 1})
	if err != nil || len(fs) != 1 {
		t.Fatalf("ListForwards pending: got %+v, %v", fs, err)
	}
	next := now.Add(time.Hour)
	if f := fs[0]; f.JobID != "j4" || f.Attempts != 1 || f.LastStatus != 500 || f.LastError != "app answered 500" ||
		!sameTimePtr(f.NextAttemptAt, &next) || !sameTime(f.EnqueuedAt, endedAt(t, s, "j4")) {
		t.Errorf("ListForwards entry: got %+v, want j4 after one 500, due at %s, queued at its end", f, next)
	}
	for _, bad := range []store.ForwardFilter{
		{Limit: 0}, {Limit: store.MaxLimit + 1}, {Limit: 10, Cursor: "not-a-cursor"},
		{Limit: 10, States: []store.ForwardState{"lost"}},
	} {
		if _, _, err := s.ListForwards(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListForwards(%+v): got %v, want ErrInvalid", bad, err)
		}
	}
}

// testForwardShownInEveryJobRead: every read of a job shows its forward as
// it stands.
func testForwardShownInEveryJobRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	deliver(t, s, report("a", "completed"))
	now := time.Now().Add(time.Second).Truncate(time.Millisecond)
	finish(t, s, claimOne(t, s, now, "a"), delivered(now))
	check := func(what string, j store.Job) {
		t.Helper()
		if j.Forward == nil || j.Forward.State != store.ForwardDelivered || j.Forward.Attempts != 1 ||
			j.Forward.LastStatus != 200 || !sameTimePtr(j.Forward.DeliveredAt, &now) || j.Forward.NextAttemptAt != nil {
			t.Errorf("%s: got forward %+v, want delivered at %s after 1 attempt", what, j.Forward, now)
		}
	}
	j, err := s.Job(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	check("Job", j)
	if j, err = s.JobWithDeliveries(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("JobWithDeliveries", j)
	jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: 10})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("ListJobs: %+v, %v", jobs, err)
	}
	check("ListJobs", jobs[0])
	jobs, _, err = s.ListJobs(ctx, store.Filter{Limit: 10, Statuses: []store.Status{"completed", "failed"}})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("ListJobs by status: %+v, %v", jobs, err)
	}
	check("ListJobs by status", jobs[0])
	if jobs, _, err = s.Events(ctx, 0, 10); err != nil || len(jobs) != 1 {
		t.Fatalf("Events: %+v, %v", jobs, err)
	}
	check("Events", jobs[0])
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if j, err = s.WaitJob(wctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("WaitJob", j)
	// The feed shows the forward as of the moment the event was read for
	// it: queued, at least.
	deliver(t, s, report("b", "completed"))
	events, _, err := s.WaitFeed(wctx, 1, 10)
	if err != nil || len(events) != 1 {
		t.Fatalf("WaitFeed: %+v, %v", events, err)
	}
	if !strings.Contains(string(events[0].JSON), `"forward":{"state":"pending"`) {
		t.Errorf("WaitFeed event: got %s, want b's forward pending", events[0].JSON)
	}
	waited, _, err := s.WaitEvents(wctx, 1, 10)
	if err != nil || len(waited) != 1 || waited[0].Forward == nil || !waited[0].Forward.State.Known() {
		t.Fatalf("WaitEvents: got %+v, %v; want b with its forward", waited, err)
	}
	// A job not ended has none, and says so in its JSON.
	tracked, _, err := s.Track(ctx, "open", time.Now())
	if err != nil || tracked.Forward != nil {
		t.Fatalf("Track: got forward %+v, %v; want none", tracked.Forward, err)
	}
}
