package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// fakeClock is a clock whose waits the test ends one by one.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

// fakeWait is one call to After: how long, and the channel that ends it.
type fakeWait struct {
	d  time.Duration
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- fakeWait{d, ch}
	return ch
}

// next returns the wait the retainer is in now, failing after a deadline so
// a stuck loop fails the test instead of hanging it.
func (c *fakeClock) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(20 * time.Second):
		t.Fatal("the retainer is not waiting on its clock")
		return fakeWait{}
	}
}

// round lets the retainer's next round run and returns the pauses it took
// between batches, once it waits for the round after.
func (c *fakeClock) round(t *testing.T) (pauses int) {
	t.Helper()
	w := c.next(t)
	if w.d != retainEvery {
		t.Fatalf("retainer waits %s between rounds, want %s", w.d, retainEvery)
	}
	w.ch <- c.Now()
	for {
		w := c.next(t)
		if w.d == retainEvery {
			c.waits <- w // the wait for the round after; leave it for the next call
			return pauses
		}
		pauses++
		w.ch <- c.Now()
	}
}

func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

func TestRetainerPrunesInBatches(t *testing.T) {
	day := 24 * time.Hour
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{now: start, waits: make(chan fakeWait, 1)}
	// The store ends jobs on the same clock.
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	record := func(id string, at time.Time) {
		t.Helper()
		clk.set(at)
		body := event(id, "completed")
		report, jobID, perr := handler.ParseEvent(body)
		if perr != nil {
			t.Fatal(perr)
		}
		if _, err := st.RecordWebhook(ctx, store.WebhookDelivery{Body: body, ReceivedAt: at, Attempt: 1, Report: report, JobID: jobID}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		record(fmt.Sprintf("old-%d", i), start.Add(time.Duration(i)*time.Hour))
	}
	for i := range 3 {
		record(fmt.Sprintf("new-%d", i), start.Add(100*day))
	}

	clk.set(start.Add(95 * day))
	r := newRetainer(st, 90*day, clk, zerolog.Nop())
	r.batch = 2
	r.Start(ctx)
	defer r.Close()

	// 5 jobs past the cutoff in batches of 2: 2, 2, then 1, with a pause
	// after each full batch.
	if pauses := clk.round(t); pauses != 2 {
		t.Errorf("first round: got %d pauses between batches, want 2", pauses)
	}
	jobs, _, err := st.ListJobs(ctx, store.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.JobID)
	}
	if want := []string{"new-2", "new-1", "new-0"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the first round: got jobs %v, want %v", got, want)
	}

	// Later, the rest is old enough too; seq is not reused after it.
	clk.set(start.Add(191 * day))
	if pauses := clk.round(t); pauses != 1 {
		t.Errorf("second round: got %d pauses, want 1", pauses)
	}
	if jobs, _, _ := st.ListJobs(ctx, store.Filter{Limit: 100}); len(jobs) != 0 {
		t.Fatalf("after the second round: got %d jobs, want 0", len(jobs))
	}
	record("after-prune", start.Add(191*day))
	j, err := st.JobWithDeliveries(ctx, "after-prune")
	if err != nil || j.Seq != 9 {
		t.Fatalf("job after pruning: got seq %d (%v), want 9", j.Seq, err)
	}
}

// Close ends the loop while it waits, and a second Close is harmless.
func TestRetainerCloses(t *testing.T) {
	clk := &fakeClock{now: time.Now(), waits: make(chan fakeWait, 1)}
	r := newRetainer(nil, time.Hour, clk, zerolog.Nop())
	r.Start(context.Background())
	clk.next(t)
	r.Close()
	r.Close()
}
