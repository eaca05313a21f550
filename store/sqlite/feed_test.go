package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
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
	_, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{Body: []byte(`{}`), ReceivedAt: time.Now(), Attempt: 1,
		Report: &store.Report{JobID: id, Status: store.StatusCompleted, TotalProjects: 1, CompletedProjects: 1,
			Projects: []store.Project{{ProjectID: id + "-p", Title: "t", Status: "completed", VideoURL: "https://v/" + id}}}})
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

// caughtUp returns once the feed's tail holds every commit made so far.
func caughtUp(t *testing.T, s *Store) {
	t.Helper()
	_, gen := s.changes.wait()
	if err := s.changes.catchUp(context.Background(), s, gen); err != nil {
		t.Fatalf("catchUp: %v", err)
	}
}

// jobsScanned returns once the job waiters' refresh has read the ended job
// ids up to seq and stopped, and so has woken whom it wakes.
func jobsScanned(t *testing.T, s *Store, seq int64) {
	t.Helper()
	n := s.changes
	deadline := time.Now().Add(time.Minute)
	for {
		n.mu.Lock()
		refreshing := n.refreshing
		n.mu.Unlock()
		n.cursorMu.Lock()
		cursor := n.cursor
		n.cursorMu.Unlock()
		if !refreshing && cursor >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job id scan: at seq %d (refreshing %v), want %d", cursor, refreshing, seq)
		}
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
		jobs []store.Job
		last int64
		err  error
	}
	type jobResult struct {
		id  string
		j   store.Job
		err error
	}
	evs := make(chan evResult, waiters)
	jobs := make(chan jobResult, waiters)
	for i := range waiters {
		go func() {
			j, last, err := s.WaitEvents(ctx, 1, 100)
			evs <- evResult{j, last, err}
		}()
		go func() {
			id := fmt.Sprintf("never-%d", i)
			j, err := s.WaitJob(ctx, id)
			jobs <- jobResult{id, j, err}
		}()
	}
	awaitParked(t, s, 2*waiters)

	reads, woken := s.changes.tail.reads.Load(), s.changes.woken.Load()
	endJob(t, s, "first")
	for range waiters {
		r := <-evs
		if r.err != nil || len(r.jobs) != 1 || r.jobs[0].JobID != "first" || r.jobs[0].Seq != 2 || r.last != 2 {
			t.Fatalf("WaitEvents after 1: got %d jobs, last %d, %v; want job first at seq 2", len(r.jobs), r.last, r.err)
		}
	}
	jobsScanned(t, s, 2)
	if got := s.changes.tail.reads.Load() - reads; got != 2 {
		t.Fatalf("store reads for one commit with %d waiters: got %d, want 2 (the feed's tail, the ended job ids)", 2*waiters, got)
	}

	reads = s.changes.tail.reads.Load()
	const commits = 20
	for i := range commits {
		endJob(t, s, fmt.Sprintf("other-%d", i))
		jobsScanned(t, s, int64(3+i))
	}
	if got := s.changes.tail.reads.Load() - reads; got < 1 || got > commits {
		t.Fatalf("store reads for %d commits with %d job waiters: got %d, want 1 to %d", commits, waiters, got, commits)
	}
	if got := s.changes.woken.Load() - woken; got != 0 {
		t.Fatalf("job waiters woken by commits of other jobs: got %d, want 0", got)
	}
	if got := s.changes.parked.Load(); got != waiters {
		t.Fatalf("job waiters parked: got %d, want %d", got, waiters)
	}

	endJob(t, s, "never-7")
	jobsScanned(t, s, 3+commits)
	if got := s.changes.woken.Load() - woken; got != 1 {
		t.Fatalf("job waiters woken when never-7 ended: got %d, want 1", got)
	}
	if r := <-jobs; r.id != "never-7" || r.err != nil || !r.j.Terminal || r.j.JobID != "never-7" {
		t.Fatalf("first WaitJob to return: got %s: %+v, %v; want never-7, terminal", r.id, r.j, r.err)
	}
	cancel()
	for range waiters - 1 {
		if r := <-jobs; !errors.Is(r.err, store.ErrNotFound) || r.j.Terminal {
			t.Fatalf("WaitJob(%s) at ctx end: got %+v, %v; want ErrNotFound", r.id, r.j, r.err)
		}
	}
}

func TestWaitJobWakesForItsJobOnly(t *testing.T) {
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		j   store.Job
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
		jobsScanned(t, s, int64(i+1))
		if n := s.changes.woken.Load(); n != 0 {
			t.Fatalf("after other-%d ended: %d job waiters woken, want 0", i, n)
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
	done := make(chan result, 1)
	go func() {
		j, err := s.WaitJob(short, "pending")
		done <- result{j, err}
	}()
	awaitParked(t, s, 1)
	stop()
	if r := <-done; r.err != nil || r.j.JobID != "pending" || r.j.Status != store.StatusPending {
		t.Fatalf("WaitJob(pending) at ctx end: got %+v, %v; want it pending", r.j, r.err)
	}
}

// TestWaitJobManyEndsInOneCommit: a waiter on a job is woken when its job
// ends in one commit with many others.
func TestWaitJobManyEndsInOneCommit(t *testing.T) {
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	s.changes.tail.size = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan store.Job, 1)
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
			if _, _, err := tx.endJob(&store.Report{JobID: id, Status: store.StatusFailed}, "[]", store.SourcePoll); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j := <-got; j.JobID != "mine" || j.Status != store.StatusFailed || j.Seq != 1 {
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
	got := make(chan []store.Job, 1)
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
	if _, _, err := s.WaitEvents(ctx, 0, store.MaxLimit+1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("WaitEvents limit %d: got %v, want ErrInvalid", store.MaxLimit+1, err)
	}
}

// TestWaitJobFirstCommitAfterOpen: the first commit after Open ends the
// awaited job; the tail, read for the first time then, must not take that
// end for history.
func TestWaitJobFirstCommitAfterOpen(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "nh.db")
		if reopen { // the file has history
			old := openFeedStore(t, path)
			endJob(t, old, "old")
			old.Close()
		}
		s := openFeedStore(t, path)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		got := make(chan error, 1)
		go func() {
			j, err := s.WaitJob(ctx, "first")
			if err == nil && (ctx.Err() != nil || !j.Terminal) {
				err = fmt.Errorf("got %+v at ctx end, want it when its job ended", j)
			}
			got <- err
		}()
		awaitParked(t, s, 1)
		endJob(t, s, "first")
		if err := <-got; err != nil {
			t.Fatalf("reopened %v: WaitJob(first): %v", reopen, err)
		}
		cancel()
		s.Close()
	}
}

// TestWaitFeedEncodesOnceForAll: every stream gets the same bytes, the JSON
// the API shows the job in, encoded once.
func TestWaitFeedEncodesOnceForAll(t *testing.T) {
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	ctx := context.Background()
	caughtUp(t, s) // the tail starts before the events, so it holds them
	endJob(t, s, "a")
	endJob(t, s, "b")
	a, lastA, errA := s.WaitFeed(ctx, 0, 10)
	b, lastB, errB := s.WaitFeed(ctx, 1, 10)
	jobs, _, err := s.Events(ctx, 0, 10)
	if err := errors.Join(errA, errB, err); err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || len(b) != 1 || lastA != 2 || lastB != 2 || a[1].Seq != 2 {
		t.Fatalf("got %d events (last %d) and %d (last %d); want 2 and 1, last 2", len(a), lastA, len(b), lastB)
	}
	for i, e := range a {
		want, _ := json.Marshal(jobs[i])
		if string(e.JSON) != string(want) {
			t.Errorf("event %d: got %s, want %s", e.Seq, e.JSON, want)
		}
	}
	if &a[1].JSON[0] != &b[0].JSON[0] {
		t.Errorf("event 2 was encoded twice, want once for both readers")
	}
}

// TestFeedTailStartsOverAfterAFlood: when more jobs ended since the tail's
// last read than it would keep, it starts over at the newest seq instead of
// reading them all; job waiters are woken to read their jobs themselves,
// and older cursors are served from the store.
func TestFeedTailStartsOverAfterAFlood(t *testing.T) {
	const flood = 1100
	s := openFeedStore(t, filepath.Join(t.TempDir(), "nh.db"))
	s.changes.tail.size = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan store.Job, 1)
	go func() {
		j, _ := s.WaitJob(ctx, "mine")
		if ctx.Err() != nil {
			j = store.Job{} // answered at ctx end, not when woken
		}
		got <- j
	}()
	awaitParked(t, s, 1)
	err := s.write(ctx, func(tx *txn) error {
		for i := range flood {
			id := fmt.Sprintf("flood-%d", i)
			if i == 0 {
				id = "mine"
			}
			if _, _, err := tx.endJob(&store.Report{JobID: id, Status: store.StatusCompleted}, "[]", store.SourcePoll); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j := <-got; j.JobID != "mine" || !j.Terminal || j.Seq != 1 {
		t.Fatalf("WaitJob(mine): got %+v; want it terminal at seq 1", j)
	}
	caughtUp(t, s)
	if base, n := s.changes.tail.base, len(s.changes.tail.events); base != flood || n != 0 {
		t.Fatalf("tail after the flood: base %d with %d events; want base %d, none", base, n, flood)
	}
	jobs, last, err := s.WaitEvents(ctx, 0, 10)
	if err != nil || len(jobs) != 10 || jobs[0].JobID != "mine" || last != 10 {
		t.Fatalf("WaitEvents after 0: got %d jobs, last %d, %v; want 10 from mine, last 10", len(jobs), last, err)
	}
}
