package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func testEventsOrderedAndWaitWakes(t *testing.T, s store.Store) {
	ctx := context.Background()
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
		j, err := s.WaitJob(wctx, "c") // not in the log yet
		if err == nil && wctx.Err() != nil {
			err = fmt.Errorf("returned at ctx end, not when its job ended: %w", wctx.Err())
		}
		got <- result{j, err}
	}()
	awaitWaiting(t, s, 1)
	deliver(t, s, report("c", "completed"))
	r := <-got
	if r.err != nil || !r.j.Terminal || r.j.Seq != 3 || r.j.JobID != "c" {
		t.Fatalf("WaitJob: got %+v, %v", r.j, r.err)
	}
	// A job already ended answers at once.
	if j, err := s.WaitJob(wctx, "a"); err != nil || j.Seq != 1 {
		t.Fatalf("WaitJob(a): got %+v, %v; want it at seq 1", j, err)
	}
}

func testConcurrentDeliveriesAllStored(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Go(func() { deliver(t, s, report(fmt.Sprintf("job-%03d", i), "completed")) })
	}
	wg.Wait()
	events, last, err := s.Events(ctx, 0, 500)
	if err != nil || last != 200 || len(events) != 200 {
		t.Fatalf("got %d events, last seq %d, %v; want 200, 200", len(events), last, err)
	}
	seen := map[string]bool{}
	for i, j := range events {
		if j.Seq != int64(i+1) || seen[j.JobID] {
			t.Fatalf("event %d: got seq %d for %s (seen before: %v), want seq %d, each job once", i, j.Seq, j.JobID, seen[j.JobID], i+1)
		}
		seen[j.JobID] = true
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Failed(); err != nil {
		t.Fatalf("Failed: %v", err)
	}
}

// testWaitEventsAndWaitFeedWake: waiters on the feed are woken by the
// commit that ends a job, and WaitFeed's events are the JSON Events shows.
func testWaitEventsAndWaitFeedWake(t *testing.T, s store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deliver(t, s, report("a", "completed"))
	type result struct {
		seqs []int64
		data [][]byte
		last int64
		err  error
	}
	evs, feed := make(chan result, 1), make(chan result, 1)
	go func() {
		jobs, last, err := s.WaitEvents(ctx, 1, 10)
		r := result{last: last, err: err}
		for _, j := range jobs {
			r.seqs = append(r.seqs, j.Seq)
		}
		evs <- r
	}()
	go func() {
		events, last, err := s.WaitFeed(ctx, 1, 10)
		r := result{last: last, err: err}
		for _, e := range events {
			r.seqs, r.data = append(r.seqs, e.Seq), append(r.data, e.JSON)
		}
		feed <- r
	}()
	awaitWaiting(t, s, 2)
	deliver(t, s, report("b", "partial"))
	want, _, err := s.Events(ctx, 1, 10)
	if err != nil || len(want) != 1 {
		t.Fatalf("Events after 1: got %d, %v", len(want), err)
	}
	wantJSON, _ := json.Marshal(want[0])
	for name, ch := range map[string]chan result{"WaitEvents": evs, "WaitFeed": feed} {
		r := <-ch
		if ctx.Err() != nil {
			t.Fatalf("%s answered at ctx end, not when b ended", name)
		}
		if r.err != nil || fmt.Sprint(r.seqs) != "[2]" || r.last != 2 {
			t.Errorf("%s after 1: got seqs %v last %d, %v; want [2], last 2", name, r.seqs, r.last, r.err)
		}
		if name == "WaitFeed" && len(r.data) == 1 && string(r.data[0]) != string(wantJSON) {
			t.Errorf("WaitFeed JSON:\ngot  %s\nwant %s", r.data[0], wantJSON)
		}
	}
	// With nothing new, both answer empty at ctx end, with the cursor.
	short, stop := context.WithCancel(ctx)
	stop()
	if jobs, last, err := s.WaitEvents(short, 2, 10); err != nil || len(jobs) != 0 || last != 2 {
		t.Errorf("WaitEvents after 2, ctx ended: got %d jobs, last %d, %v; want none, 2", len(jobs), last, err)
	}
	if events, last, err := s.WaitFeed(short, 2, 10); err != nil || len(events) != 0 || last != 2 {
		t.Errorf("WaitFeed after 2, ctx ended: got %d events, last %d, %v; want none, 2", len(events), last, err)
	}
}

// testWaitEventsExactlyOnceInOrder follows the feed with several readers,
// each in small pages like an event stream, while writers commit
// concurrently: every reader must see each seq once, in order, with no gap.
func testWaitEventsExactlyOnceInOrder(t *testing.T, s store.Store) {
	const (
		writers  = 4
		perWrite = 40
		total    = writers * perWrite
		readers  = 8
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, readers)
	var rwg sync.WaitGroup
	for r := range readers {
		rwg.Go(func() {
			cursor, seen := int64(0), map[string]bool{}
			limit := 1 + r%5
			for cursor < total {
				jobs, last, err := s.WaitEvents(ctx, cursor, limit)
				if err != nil || ctx.Err() != nil {
					errs <- fmt.Errorf("reader %d after %d: %v (ctx %v)", r, cursor, err, ctx.Err())
					return
				}
				if len(jobs) == 0 || len(jobs) > limit {
					errs <- fmt.Errorf("reader %d after %d: got %d events, want 1 to %d", r, cursor, len(jobs), limit)
					return
				}
				for _, j := range jobs {
					if j.Seq != cursor+1 || seen[j.JobID] || !j.Terminal {
						errs <- fmt.Errorf("reader %d: got seq %d (%s, seen %v) after %d; want %d, new", r, j.Seq, j.JobID, seen[j.JobID], cursor, cursor+1)
						return
					}
					seen[j.JobID], cursor = true, j.Seq
				}
				if last != cursor {
					errs <- fmt.Errorf("reader %d: got last %d, want %d", r, last, cursor)
					return
				}
			}
		})
	}
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Go(func() {
			for i := range perWrite {
				deliver(t, s, report(fmt.Sprintf("w%d-%d", w, i), "completed"))
			}
		})
	}
	wwg.Wait()
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testWaitJobAnswersAtContextEnd(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.Track(ctx, "pending", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithCancel(ctx)
	type result struct {
		j   store.Job
		err error
	}
	done := make(chan result, 2)
	for _, id := range []string{"pending", "unknown"} {
		go func() {
			j, err := s.WaitJob(short, id)
			done <- result{j, err}
		}()
	}
	awaitWaiting(t, s, 2)
	stop()
	for range 2 {
		r := <-done
		switch r.j.JobID {
		case "pending":
			if r.err != nil || r.j.Status != store.StatusPending || r.j.Terminal {
				t.Errorf("WaitJob(pending) at ctx end: got %+v, %v; want it pending", r.j, r.err)
			}
		default:
			if !errorsIsNotFound(r.err) {
				t.Errorf("WaitJob(unknown) at ctx end: got %+v, %v; want ErrNotFound", r.j, r.err)
			}
		}
	}
}
