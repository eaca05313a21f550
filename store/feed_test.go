package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// These tests look inside the store (the tail's read counter and the count
// of parked waiters), so they are in package store.

func openFeedStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func endJob(t testing.TB, s *Store, id string) {
	t.Helper()
	_, err := s.RecordWebhook(context.Background(), WebhookDelivery{Body: []byte(`{}`), ReceivedAt: time.Now(), Attempt: 1,
		Report: &Report{JobID: id, Status: StatusCompleted, TotalProjects: 1, CompletedProjects: 1,
			Projects: []Project{{ProjectID: id + "-p", Title: "t", Status: "completed", VideoURL: "https://v/" + id}}}})
	if err != nil {
		t.Errorf("RecordWebhook(%s): %v", id, err)
	}
}

// awaitParked returns once n waiters are blocked until the next commit. It
// polls for a state that must come, so it cannot pass by luck.
func awaitParked(t *testing.T, s *Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.changes.parked.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiters parked: got %d, want %d", s.changes.parked.Load(), n)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestManyWaitersCostOneReadPerCommit(t *testing.T) {
	const waiters = 500
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	endJob(t, s, "before")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type evResult struct {
		jobs []Job
		last int64
		err  error
	}
	evs := make(chan evResult, waiters)
	jobs := make(chan error, waiters)
	for i := range waiters {
		go func() {
			j, last, err := s.WaitEvents(ctx, 1, 100)
			evs <- evResult{j, last, err}
		}()
		go func() {
			j, err := s.WaitJob(ctx, fmt.Sprintf("never-%d", i))
			if err == nil || !errors.Is(err, ErrNotFound) || j.Terminal {
				err = fmt.Errorf("WaitJob(never-%d) at ctx end: got %+v, %v; want ErrNotFound", i, j, err)
			} else {
				err = nil
			}
			jobs <- err
		}()
	}
	awaitParked(t, s, 2*waiters)

	reads := s.changes.tail.reads.Load()
	endJob(t, s, "first")
	for range waiters {
		r := <-evs
		if r.err != nil || len(r.jobs) != 1 || r.jobs[0].JobID != "first" || r.jobs[0].Seq != 2 || r.last != 2 {
			t.Fatalf("WaitEvents after 1: got %d jobs, last %d, %v; want job first at seq 2", len(r.jobs), r.last, r.err)
		}
	}
	awaitParked(t, s, waiters) // every WaitJob looked and went back to sleep
	if got := s.changes.tail.reads.Load() - reads; got < 1 || got > 2 {
		t.Fatalf("store reads for one commit with %d waiters: got %d, want 1 or 2", 2*waiters, got)
	}

	reads = s.changes.tail.reads.Load()
	const commits = 20
	for i := range commits {
		endJob(t, s, fmt.Sprintf("other-%d", i))
		awaitParked(t, s, waiters)
	}
	if got := s.changes.tail.reads.Load() - reads; got < 1 || got > commits {
		t.Fatalf("store reads for %d commits with %d job waiters: got %d, want 1 to %d", commits, waiters, got, commits)
	}
	cancel()
	for range waiters {
		if err := <-jobs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWaitJobWakesForItsJobOnly(t *testing.T) {
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		j   Job
		err error
	}
	got := make(chan result, 1)
	go func() {
		j, err := s.WaitJob(ctx, "mine") // not in the log yet
		if ctx.Err() != nil {
			err = fmt.Errorf("returned at ctx end, not when its job ended: %w", ctx.Err())
		}
		got <- result{j, err}
	}()
	awaitParked(t, s, 1)
	for i := range 5 {
		endJob(t, s, fmt.Sprintf("other-%d", i))
		awaitParked(t, s, 1) // it woke, looked, and went back to waiting
		select {
		case r := <-got:
			t.Fatalf("after other-%d ended: WaitJob(mine) returned %+v, %v; want it still waiting", i, r.j, r.err)
		default:
		}
	}
	endJob(t, s, "mine")
	r := <-got
	if r.err != nil || r.j.JobID != "mine" || !r.j.Terminal || r.j.Seq != 6 || len(r.j.Projects) != 1 {
		t.Fatalf("WaitJob(mine): got %+v, %v; want mine terminal at seq 6 with its project", r.j, r.err)
	}

	// A job already ended answers at once; one tracked but pending answers
	// as it stands when ctx ends.
	if j, err := s.WaitJob(ctx, "other-2"); err != nil || j.Seq != 3 {
		t.Fatalf("WaitJob(other-2): got %+v, %v; want it at seq 3", j, err)
	}
	if _, _, err := s.Track(ctx, "pending", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithCancel(ctx)
	go func() {
		j, err := s.WaitJob(short, "pending")
		got <- result{j, err}
	}()
	awaitParked(t, s, 1)
	stop()
	if r := <-got; r.err != nil || r.j.JobID != "pending" || r.j.Status != StatusPending {
		t.Fatalf("WaitJob(pending) at ctx end: got %+v, %v; want it pending", r.j, r.err)
	}
}

// TestWaitJobTailOverrun: when more jobs end between two looks than the
// tail holds, the waiter reads its job from the store instead.
func TestWaitJobTailOverrun(t *testing.T) {
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	s.changes.tail.size = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan Job, 1)
	go func() {
		j, _ := s.WaitJob(ctx, "mine")
		got <- j
	}()
	awaitParked(t, s, 1)
	// One commit that ends twelve jobs, "mine" first: the tail keeps only
	// the newest, so "mine" is out of it by the time the waiter looks.
	err := s.write(ctx, func(tx *txn) error {
		for i := range 12 {
			id := fmt.Sprintf("batch-%d", i)
			if i == 0 {
				id = "mine"
			}
			if _, _, err := tx.endJob(&Report{JobID: id, Status: StatusFailed}, "[]", SourcePoll); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j := <-got; j.JobID != "mine" || j.Status != StatusFailed || j.Seq != 1 {
		t.Fatalf("WaitJob(mine): got %+v; want it failed at seq 1", j)
	}
}

// TestWaitEventsExactlyOnceInOrder follows the feed with many readers, each
// in small pages like an event stream, while writers commit concurrently.
// Some readers start before the tail exists, some far behind it (a tail of
// 8 makes them read the store), and every reader must see each seq once, in
// order, with no gap.
func TestWaitEventsExactlyOnceInOrder(t *testing.T) {
	const (
		writers  = 8
		perWrite = 60
		total    = writers * perWrite
		readers  = 40
	)
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	s.changes.tail.size = 8
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	errs := make(chan error, readers)
	var rwg sync.WaitGroup
	for r := range readers {
		rwg.Go(func() {
			cursor, seen := int64(0), map[string]bool{}
			limit := 1 + r%7
			for cursor < total {
				jobs, last, err := s.WaitEvents(ctx, cursor, limit)
				if err != nil {
					errs <- fmt.Errorf("reader %d after %d: %w", r, cursor, err)
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
				if r%5 == 0 && cursor%13 == 0 {
					// Fall behind now and then, as a slow stream does.
					runtime.Gosched()
				}
			}
		})
	}
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Go(func() {
			for i := range perWrite {
				endJob(t, s, fmt.Sprintf("w%d-%d", w, i))
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

// TestFeedTailStartsFromTheStore: after a restart the tail starts at the
// newest seq in the file, so a waiter neither sees old events as new nor
// misses any.
func TestFeedTailStartsFromTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nh.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		endJob(t, s, id)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFeedStore(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	jobs, last, err := s.WaitEvents(ctx, 1, 10)
	if err != nil || len(jobs) != 2 || jobs[0].JobID != "b" || last != 3 {
		t.Fatalf("WaitEvents after 1: got %d jobs, last %d, %v; want b, c and last 3", len(jobs), last, err)
	}
	got := make(chan []Job, 1)
	go func() {
		jobs, _, _ := s.WaitEvents(ctx, 3, 10)
		got <- jobs
	}()
	awaitParked(t, s, 1)
	endJob(t, s, "d")
	if jobs := <-got; len(jobs) != 1 || jobs[0].JobID != "d" || jobs[0].Seq != 4 {
		t.Fatalf("WaitEvents after 3: got %+v; want d at seq 4", jobs)
	}
	short, stop := context.WithCancel(ctx)
	stop()
	if jobs, last, err := s.WaitEvents(short, 4, 10); err != nil || len(jobs) != 0 || last != 4 {
		t.Fatalf("WaitEvents after 4, ctx ended: got %d jobs, last %d, %v; want none, 4", len(jobs), last, err)
	}
	if _, _, err := s.WaitEvents(ctx, 0, MaxLimit+1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("WaitEvents limit %d: got %v, want ErrInvalid", MaxLimit+1, err)
	}
}
