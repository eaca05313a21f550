package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func openCopyStore(t *testing.T, dbURL string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dbURL, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recordEnd ends job id by a webhook; it may run outside the test's
// goroutine.
func recordEnd(s *Store, id string) error {
	body := []byte(`{"jobId":"` + id + `","status":"completed"}`)
	_, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{
		Body: body, ReceivedAt: time.Now(), Attempt: 1, JobID: id,
		Report: &store.Report{JobID: id, Status: store.StatusCompleted},
	})
	return err
}

func endJob(t *testing.T, s *Store, id string) {
	t.Helper()
	if err := recordEnd(s, id); err != nil {
		t.Fatalf("RecordWebhook %s: %v", id, err)
	}
}

// An export from a Source while another store keeps ending jobs is one
// snapshot: its rows agree with its counts, so the import checks out, and
// the copy ends its next job with the seq after the last one copied.
func TestCopyWhileWriting(t *testing.T) {
	srcURL, dstURL := freshSchema(t), freshSchema(t)
	s := openCopyStore(t, srcURL)
	for i := range 30 {
		endJob(t, s, fmt.Sprintf("before-%d", i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := recordEnd(s, fmt.Sprintf("during-%d", i)); err != nil {
				t.Errorf("RecordWebhook during the copy: %v", err)
				return
			}
		}
	})
	src, err := OpenSource(context.Background(), srcURL)
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer src.Close()
	dst := openCopyStore(t, dstURL)
	var want store.LogCounts
	got, err := dst.Import(context.Background(), func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		c, err := src.Export(ctx, fn)
		want = c
		return c, err
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if d := got.Diff(want); d != "" || got.Jobs < 30 || got.Jobs != got.LastSeq {
		t.Fatalf("copy: got %+v; want the source's %+v, at least 30 jobs, one seq each (%s)", got, want, d)
	}
	endJob(t, dst, "after-copy")
	if j, err := dst.Job(context.Background(), "after-copy"); err != nil || j.Seq != got.LastSeq+1 {
		t.Errorf("a job ending on the copy: got seq %d, %v; want %d", j.Seq, err, got.LastSeq+1)
	}
}

// An import that fails half-way, after some rows were sent, leaves the log
// empty so the copy can be run again; one into a log that is not empty is
// refused and changes nothing.
func TestImportIsAllOrNothing(t *testing.T) {
	src := openCopyStore(t, freshSchema(t))
	const jobs = copyBatch + 5 // past one batch, so some rows were sent
	for i := range jobs {
		endJob(t, src, fmt.Sprintf("job-%d", i))
	}
	dst := openCopyStore(t, freshSchema(t))
	broken := errors.New("the source went away")
	_, err := dst.Import(context.Background(), func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		return src.Export(ctx, func(r store.Record) error {
			if r.Delivery != nil {
				return broken
			}
			return fn(r)
		})
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Import from a failing source: got %v, want its error", err)
	}
	if c, err := countLog(context.Background(), dst.pool); err != nil || !c.Empty() {
		t.Fatalf("after a failed import: got %+v, %v; want an empty log", c, err)
	}
	want, err := dst.Import(context.Background(), src.Export)
	if err != nil || want.Jobs != jobs || want.LastSeq != jobs {
		t.Fatalf("Import again: got %+v, %v; want %d jobs", want, err, jobs)
	}
	if _, err := dst.Import(context.Background(), src.Export); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Import into a log that is not empty: got %v, want ErrInvalid", err)
	}
	if got, err := countLog(context.Background(), dst.pool); err != nil || got.Diff(want) != "" {
		t.Errorf("after a refused import: %s, %v", got.Diff(want), err)
	}
}

// OpenSource refuses a schema that holds no log, naming the URL without its
// password.
func TestOpenSourceRefusesNoLog(t *testing.T) {
	_, err := OpenSource(context.Background(), freshSchema(t))
	if err == nil {
		t.Fatal("OpenSource of an empty schema: got nil, want an error")
	}
}

// A write to the target while an import runs waits for it, then follows on
// from it: it neither slips in before the copied rows (which would make the
// log not empty, or take a copied id or seq) nor is lost.
func TestImportHoldsOffWriters(t *testing.T) {
	ctx := context.Background()
	src := openCopyStore(t, freshSchema(t))
	for i := range 3 {
		endJob(t, src, fmt.Sprintf("job-%d", i))
	}
	dstURL := freshSchema(t)
	dst := openCopyStore(t, dstURL)
	// Another replica on the target, named so that its waits can be found.
	other := openCopyStore(t, dstURL+"&application_name=nh_copy_other")

	started, hold := make(chan struct{}), make(chan struct{})
	// Cleanups run last first: the import lets go of its connection before
	// the stores close.
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release)
	imported := make(chan error, 1)
	go func() {
		_, err := dst.Import(ctx, func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
			first := true
			return src.Export(ctx, func(r store.Record) error {
				if first {
					first = false
					close(started)
					<-hold
				}
				return fn(r)
			})
		})
		imported <- err
	}()
	<-started
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if err := recordEnd(other, "during-import"); err != nil {
			t.Errorf("RecordWebhook during the import: %v", err)
		}
	}()
	// Wait until the write is either done or waiting on a lock held by the
	// import; with the tables locked it must be the latter.
	for waiting := false; !waiting; {
		select {
		case <-wrote:
			t.Fatal("a write to the target went through while the import ran")
		default:
		}
		if err := dst.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE application_name = 'nh_copy_other' AND wait_event_type = 'Lock'
			AND datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := <-imported; err != nil {
		t.Fatalf("Import: %v", err)
	}
	<-wrote
	j, err := dst.Job(ctx, "during-import")
	if err != nil || j.Seq != 4 {
		t.Errorf("the write held off by the import: got seq %d, %v; want 4, after the 3 copied", j.Seq, err)
	}
}

// A copy carries the forwarding queue as it stands, leases and tokens
// included, the attempts and polls of each job's timeline, and the pause.
func TestCopyCarriesForwardsAndTimeline(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := src.Track(ctx, id, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := src.RecordPoll(ctx, id, store.PollResult{Err: "nouvel answered 502", Failed: true, Next: t0}); err != nil {
			t.Fatal(err)
		}
		endJob(t, src, id)
	}
	c := claimAt(t, src, t0, 2, time.Minute, false)
	if ok, err := src.FinishForward(ctx, c[0], store.ForwardResult{At: t0, Took: time.Second, Status: 410,
		Err: "app answered 410 Gone", State: store.ForwardPaused}); err != nil || !ok {
		t.Fatalf("finish a: %v %v", ok, err)
	}
	// b stays claimed: its lease and token go with the copy.
	dst := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	source, err := OpenSource(ctx, src.url)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	var want store.LogCounts
	got, err := dst.Import(ctx, func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		c, err := source.Export(ctx, fn)
		want = c
		return c, err
	})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if d := got.Diff(want); d != "" || got.Forwards != 3 || got.ForwardAttempts != 1 || got.Polls != 3 ||
		!got.Paused || got.PauseReason != "app answered 410 Gone" || got.Counters["forward:pending"] != 2 ||
		got.Counters["forward:paused"] != 1 {
		t.Fatalf("copy: got %+v; want the source's %+v (%s)", got, want, d)
	}
	var kept int
	if err := dst.pool.QueryRow(ctx, `SELECT count(*) FROM counters WHERE name LIKE 'forward:%'`).Scan(&kept); err != nil || kept != 0 {
		t.Errorf("forward counters stored by the import: %d, %v; want none, this backend counts rows", kept, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		for what, read := range map[string]func(s *Store) (any, error){
			"job":      func(s *Store) (any, error) { return s.JobWithDeliveries(ctx, id) },
			"attempts": func(s *Store) (any, error) { return s.ForwardAttempts(ctx, id) },
			"polls":    func(s *Store) (any, error) { return s.JobPolls(ctx, id) },
		} {
			a, errA := read(src)
			b, errB := read(dst)
			ja, jb := mustJSON(t, a), mustJSON(t, b)
			if errA != nil || errB != nil || ja != jb {
				t.Errorf("%s's %s: source %s (%v), copy %s (%v)", id, what, ja, errA, jb, errB)
			}
		}
	}
	stSrc, _ := src.ForwardStats(ctx)
	stDst, _ := dst.ForwardStats(ctx)
	if ja, jb := mustJSON(t, stSrc), mustJSON(t, stDst); ja != jb {
		t.Errorf("stats: source %s, copy %s", ja, jb)
	}
	// b's claim still holds on the copy, and its token still fences it.
	if got := claimAt(t, dst, t0.Add(30*time.Second), 5, time.Minute, false); len(got) != 0 {
		t.Errorf("claim on the paused copy: %v; want none", claimedIDs(got))
	}
	if err := dst.ResumeForwarding(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if ok, err := dst.FinishForward(ctx, c[1], store.ForwardResult{At: t0, Status: 200,
		State: store.ForwardDelivered}); err != nil || !ok {
		t.Errorf("finishing b's claim on the copy: %v %v; want recorded", ok, err)
	}
	if _, err := dst.RecordPoll(ctx, "a", store.PollResult{Err: "late", Failed: true}); err != nil {
		t.Fatal(err)
	}
	if after, err := countLog(ctx, dst.pool); err != nil || after.Polls != 3 || after.ForwardAttempts != 2 {
		t.Errorf("after writes on the copy: %+v %v", after, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
