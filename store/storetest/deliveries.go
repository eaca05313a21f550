package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func testFirstTerminalReportWins(t *testing.T, s store.Store) {
	ctx := context.Background()
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

func testInvalidDeliveryKeptButNoJob(t *testing.T, s store.Store) {
	ctx := context.Background()
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

// testIdenticalReplayStoredOnce: the same bytes delivered again are one
// delivery with more copies, with the first arrival's outcome; the
// counters count every copy.
func testIdenticalReplayStoredOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	const replays = 50
	body := []byte(`{"event":"job.completed","jobId":"r1","status":"completed"}`)
	bad := []byte(`{"event":"job.completed","jobId":"r2","status":"done"}`)
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range replays {
		at := start.Add(time.Duration(i) * time.Second)
		out, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: body, ReceivedAt: at, Attempt: 1 + i%3, Report: report("r1", "completed")})
		want := store.OutcomeDuplicate
		if i == 0 {
			want = store.OutcomeAccepted
		}
		if out != want || err != nil {
			t.Fatalf("delivery %d: got %s, %v; want %s", i, out, err, want)
		}
		if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: bad, ReceivedAt: at, JobID: "r2", Problem: "bad status"}); err != nil {
			t.Fatal(err)
		}
	}
	// Other bytes for the same job are a delivery of their own.
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{"other":1}`), ReceivedAt: start, Report: report("r1", "completed")}); err != nil {
		t.Fatal(err)
	}
	j, err := s.JobWithDeliveries(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if j.WebhookDeliveries != replays+1 || j.DeliveriesTotal != replays+1 || len(j.Deliveries) != 2 {
		t.Fatalf("got webhookDeliveries=%d deliveriesTotal=%d and %d deliveries, want %d %d and 2",
			j.WebhookDeliveries, j.DeliveriesTotal, len(j.Deliveries), replays+1, replays+1)
	}
	first, other := j.Deliveries[0], j.Deliveries[1]
	if first.Copies != replays || first.Duplicate || first.Attempt != 1 || !first.ReceivedAt.Equal(start) {
		t.Errorf("replayed delivery: got %+v, want %d copies, the first arrival's (attempt 1 at %s, not a duplicate)", first, replays, start)
	}
	if other.Copies != 1 || !other.Duplicate {
		t.Errorf("other bytes: got %+v, want 1 copy, a duplicate", other)
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

func testJobWithDeliveriesListsTheLast100(t *testing.T, s store.Store) {
	ctx := context.Background()
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

func testTrackThenWebhookEndsTrackedJob(t *testing.T, s store.Store) {
	ctx := context.Background()
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
	if j.Status != "partial" || j.Seq != 1 || j.TerminalAt == nil || j.Source != store.SourceWebhook {
		t.Fatalf("got %+v", j)
	}
}

func testJobNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Job(ctx, "nobody")
	_, err2 := s.JobWithDeliveries(ctx, "nobody")
	for _, err := range []error{err, err2} {
		if !errors.Is(err, store.ErrNotFound) || store.ErrorCode(err) != store.ENOTFOUND {
			t.Errorf("unknown job: got %v (code %q), want ErrNotFound", err, store.ErrorCode(err))
		}
	}
}

func testCloseRefusesWrites(t *testing.T, s store.Store) {
	ctx := context.Background()
	deliver(t, s, report("kept", "completed"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{}"), Report: report("late", "completed")}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write after Close: got %v, want ErrUnavailable", err)
	}
	if err := s.Failed(); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Failed after Close: got %v, want ErrUnavailable", err)
	}
}

// testConcurrentEndsOfTheSameJobs: many deliveries at once, several of
// each job, so that one commit holds a job's first end and its repeats,
// beside new jobs and invalid bodies. Each job ends once, with the first
// report's status; every delivery is counted once, as what it was.
func testConcurrentEndsOfTheSameJobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	const jobs, singles, invalid = 40, 20, 20
	type result struct {
		id     string
		status store.Status
		out    store.Outcome
	}
	results := make(chan result, jobs*5+singles)
	var wg sync.WaitGroup
	for i := range jobs {
		id := fmt.Sprintf("same-%02d", i)
		for k := range 5 {
			status := store.Status("completed")
			if k == 2 {
				status = "failed"
			}
			wg.Go(func() { results <- result{id, status, deliver(t, s, report(id, status))} })
		}
	}
	for i := range singles {
		id := fmt.Sprintf("single-%02d", i)
		wg.Go(func() { results <- result{id, "completed", deliver(t, s, report(id, "completed"))} })
	}
	for i := range invalid {
		wg.Go(func() {
			body := fmt.Appendf(nil, `{"jobId":"bad-%d","status":"done"}`, i)
			if out, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: body, ReceivedAt: time.Now(), Attempt: 1,
				JobID: fmt.Sprintf("bad-%d", i), Problem: "bad status"}); err != nil || out != store.OutcomeInvalid {
				t.Errorf("invalid delivery %d: got %s, %v", i, out, err)
			}
		})
	}
	wg.Wait()
	close(results)
	won := map[string]store.Status{}
	var dups, conflicts int
	outs := map[string][]result{}
	for r := range results {
		outs[r.id] = append(outs[r.id], r)
		switch r.out {
		case store.OutcomeAccepted:
			if w, ok := won[r.id]; ok {
				t.Fatalf("%s accepted twice: %s and %s", r.id, w, r.status)
			}
			won[r.id] = r.status
		case store.OutcomeDuplicate:
			dups++
		case store.OutcomeConflict:
			conflicts++
		default:
			t.Fatalf("%s: got outcome %q", r.id, r.out)
		}
	}
	if len(won) != jobs+singles {
		t.Fatalf("got %d jobs accepted, want %d", len(won), jobs+singles)
	}
	for id, rs := range outs {
		for _, r := range rs {
			want := store.OutcomeConflict
			switch {
			case r.out == store.OutcomeAccepted:
				continue
			case r.status == won[id]:
				want = store.OutcomeDuplicate
			}
			if r.out != want {
				t.Fatalf("%s: a %s delivery after a %s end got %s, want %s", id, r.status, won[id], r.out, want)
			}
		}
		j, err := s.JobWithDeliveries(ctx, id)
		if err != nil || j.Status != won[id] || j.WebhookDeliveries != len(rs) || j.DeliveriesTotal != len(rs) || j.Seq == 0 {
			t.Fatalf("%s: got %+v, %v; want status %s, %d deliveries, a seq", id, j, err, won[id], len(rs))
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs != jobs+singles || st.Deliveries != jobs*5+singles+invalid || st.Duplicates != dups+conflicts ||
		st.Conflicts != conflicts || st.Invalid != invalid || st.LastSeq != jobs+singles {
		t.Fatalf("got stats %+v; want %d jobs, %d deliveries, %d duplicates (%d of them conflicts), %d invalid, last seq %d",
			st, jobs+singles, jobs*5+singles+invalid, dups+conflicts, conflicts, invalid, jobs+singles)
	}
	events, last, err := s.Events(ctx, 0, 500)
	if err != nil || last != jobs+singles || len(events) != jobs+singles {
		t.Fatalf("got %d events, last %d, %v; want %d", len(events), last, err, jobs+singles)
	}
}
