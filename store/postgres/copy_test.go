package postgres

import (
	"context"
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
