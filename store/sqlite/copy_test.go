package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// exportAll collects every record of an export.
func exportAll(t *testing.T, e store.Exporter) ([]store.Record, store.LogCounts) {
	t.Helper()
	var recs []store.Record
	c, err := e.Export(context.Background(), func(r store.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return recs, c
}

// An export read from a Source while the store's writer keeps committing is
// one snapshot: the rows it passes agree with the counts it returns, so an
// import of it checks out.
func TestExportWhileWriting(t *testing.T) {
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	s := openStore(t, srcPath)
	for i := range 50 {
		deliver(t, s, report(fmt.Sprintf("before-%d", i), store.StatusCompleted))
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
			deliver(t, s, report(fmt.Sprintf("during-%d", i), store.StatusCompleted))
		}
	})
	defer func() { close(stop); wg.Wait() }()

	src, err := sqlite.OpenSource(context.Background(), srcPath)
	if err != nil {
		t.Fatalf("OpenSource while the store is open: %v", err)
	}
	defer src.Close()
	for i := range 3 {
		dst := openStore(t, filepath.Join(dir, fmt.Sprintf("dst-%d.db", i)))
		var want store.LogCounts
		got, err := dst.Import(context.Background(), func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
			c, err := src.Export(ctx, fn)
			want = c
			return c, err
		})
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		if d := got.Diff(want); d != "" || got.Jobs < 50 || got.Jobs != got.LastSeq {
			t.Errorf("copy %d: got %+v; want the source's %+v, at least 50 jobs, one seq each (%s)", i, got, want, d)
		}
	}
}

// An import that fails half-way leaves the log empty, so the copy can be
// run again; one into a log that is not empty is refused and changes
// nothing.
func TestImportIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	src := openStore(t, filepath.Join(dir, "src.db"))
	for i := range 3 {
		deliver(t, src, report(fmt.Sprintf("job-%d", i), store.StatusCompleted))
	}
	dst := openStore(t, filepath.Join(dir, "dst.db"))
	broken := errors.New("the source went away")
	_, err := dst.Import(context.Background(), func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		n := 0
		return src.Export(ctx, func(r store.Record) error {
			if n++; n == 3 {
				return broken
			}
			return fn(r)
		})
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Import from a failing source: got %v, want its error", err)
	}
	if recs, c := exportAll(t, dst); len(recs) != 0 || !c.Empty() {
		t.Fatalf("after a failed import: got %d rows, %+v; want an empty log", len(recs), c)
	}
	want, err := dst.Import(context.Background(), src.Export)
	if err != nil || want.Jobs != 3 || want.LastSeq != 3 {
		t.Fatalf("Import again: got %+v, %v; want 3 jobs, last seq 3", want, err)
	}
	_, err = dst.Import(context.Background(), src.Export)
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Import into a log that is not empty: got %v, want ErrInvalid", err)
	}
	if _, got := exportAll(t, dst); got.Diff(want) != "" {
		t.Errorf("after a refused import: %s", got.Diff(want))
	}
}

// Deliveries stored before bodies were hashed (body_hash and
// last_received_at NULL) copy as they are, NULLs kept.
func TestCopyKeepsRowsWithoutHash(t *testing.T) {
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src.db")
	s := openStore(t, srcPath)
	deliver(t, s, report("old", store.StatusCompleted))
	s.Close()
	db, err := sql.Open("sqlite", "file:"+srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE deliveries SET body_hash = NULL, last_received_at = NULL`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	src, err := sqlite.OpenSource(context.Background(), srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := openStore(t, filepath.Join(dir, "dst.db"))
	if _, err := dst.Import(context.Background(), src.Export); err != nil {
		t.Fatalf("Import: %v", err)
	}
	want, _ := exportAll(t, src)
	got, _ := exportAll(t, dst)
	if len(want) != 2 || want[1].Delivery == nil || want[1].Delivery.BodyHash != nil || want[1].Delivery.LastReceivedAt != nil {
		t.Fatalf("source rows: got %+v; want a job and a delivery with no hash", want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("copied rows:\n got %+v\nwant %+v", got[1].Delivery, want[1].Delivery)
	}
}

// OpenSource refuses a log of another version, named with its migrations.
func TestOpenSourceRefusesAnotherVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nh.db")
	s := openStore(t, path)
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (name, applied_at) VALUES ('migrations/9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.OpenSource(context.Background(), path); err == nil {
		t.Error("OpenSource of a log with a migration this version lacks: got nil, want an error")
	}
}

// A copy keeps the forwarding queue as it stands: every forward, attempt
// and poll row, the pause, and the counts behind ForwardStats, so the copy
// forwards on from where the source stopped.
func TestCopyKeepsTheQueueAndTimeline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openForwarding(t, filepath.Join(dir, "src.db"))
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordPoll(ctx, id, store.PollResult{Failed: true, Err: "502", Next: time.Now()}); err != nil {
			t.Fatal(err)
		}
		deliver(t, s, report(id, store.StatusCompleted))
	}
	now := time.Now().Add(time.Second)
	claims, err := s.ClaimForwards(ctx, now, 4, time.Minute, false)
	if err != nil || len(claims) != 4 {
		t.Fatal(len(claims), err)
	}
	for i, r := range []store.ForwardResult{
		{At: now, Took: time.Second, Status: 200, State: store.ForwardDelivered},
		{At: now, Status: 500, Err: "app answered 500", State: store.ForwardFailed},
		{At: now, Status: 410, Err: "app answered 410", State: store.ForwardPaused},
	} {
		if ok, err := s.FinishForward(ctx, claims[i], r); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	// d stays leased, in flight.
	wantStats, err := s.ForwardStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := exportAll(t, s)
	dst := openForwarding(t, filepath.Join(dir, "dst.db"))
	var want store.LogCounts
	got, err := dst.Import(ctx, func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		c, err := s.Export(ctx, fn)
		want = c
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Diff(want); d != "" || got.Forwards != 4 || got.ForwardAttempts != 3 || got.Polls != 4 ||
		!got.Paused || got.PauseReason != "app answered 410" || got.Counters["forward:delivered"] != 1 ||
		got.Counters["forward:failed"] != 1 || got.Counters["forward:paused"] != 1 || got.Counters["forward:pending"] != 1 {
		t.Fatalf("copy counts: got %+v (%s); want 4 forwards, 3 attempts, 4 polls, one in each state, the pause", got, d)
	}
	if copied, _ := exportAll(t, dst); !reflect.DeepEqual(copied, src) {
		t.Fatalf("copied rows differ from the source's")
	}
	if st, err := dst.ForwardStats(ctx); err != nil || fmt.Sprint(st) != fmt.Sprint(wantStats) {
		t.Fatalf("copy's ForwardStats:\ngot  %+v, %v\nwant %+v", st, err, wantStats)
	}
	if err := dst.ResumeForwarding(ctx, now); err != nil {
		t.Fatal(err)
	}
	c, err := dst.ClaimForwards(ctx, now.Add(time.Minute), 4, time.Minute, false)
	if err != nil || len(c) != 2 || c[0].Job.JobID != "c" || c[0].Attempt != 2 || c[1].Job.JobID != "d" || c[1].Token <= claims[3].Token {
		t.Fatalf("claim in the copy: got %+v, %v; want c's second attempt and d again, with a newer token", c, err)
	}
}
