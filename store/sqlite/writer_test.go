package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func TestOneFailingWriteDoesNotSinkItsBatch(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	insert := func(id string) func(*txn) error {
		return func(t *txn) error {
			_, err := t.tx.ExecContext(t.ctx, `INSERT INTO jobs (job_id, status, created_at, updated_at)
				VALUES (?, 'pending', 0, 0)`, id)
			return err
		}
	}
	batch := []*op{
		{fn: insert("good-1"), done: make(chan error, 1)},
		{fn: func(*txn) error { return errors.New("this write fails") }, done: make(chan error, 1)},
		{fn: insert("good-2"), done: make(chan error, 1)},
	}
	s.commit(batch)
	for i, want := range []bool{true, false, true} {
		if err := <-batch[i].done; (err == nil) != want {
			t.Errorf("op %d: got err %v, want success %v", i, err, want)
		} else if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("op %d: got %v, want ErrUnavailable", i, err)
		}
	}
	for _, id := range []string{"good-1", "good-2"} {
		if _, err := s.Job(ctx, id); err != nil {
			t.Errorf("Job(%s): %v; a failing write in its batch must not undo it", id, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v; one wrong write is not a store that cannot commit", err)
	}
}

// fillDisk makes s's file full for new pages, as a full disk does, by
// capping the database at the pages it has (on the writer's connection, the
// only one that writes). A row that fits in a page with
// room still commits; a delivery, which needs new pages, does not.
func fillDisk(t *testing.T, s *Store) {
	t.Helper()
	// No free pages either: VACUUM gives them back.
	if _, err := s.wdb.Exec(`VACUUM`); err != nil {
		t.Fatal(err)
	}
	var pages, free int
	if err := s.wdb.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if err := s.wdb.QueryRow(`PRAGMA freelist_count`).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if free != 0 {
		t.Fatalf("the file has %d free pages; the test needs none so that a full file means no room", free)
	}
	var got int
	if err := s.wdb.QueryRow(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)).Scan(&got); err != nil || got != pages {
		t.Fatalf("max_page_count: got %d, %v; want %d", got, err, pages)
	}
}

// freeDisk gives the file room again.
func freeDisk(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.wdb.Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
}

func webhook(id string, size int) store.WebhookDelivery {
	return store.WebhookDelivery{Body: bytes.Repeat([]byte("b"), size), ReceivedAt: time.Now(), Attempt: 1,
		Report: &store.Report{JobID: id, Status: "completed", TotalProjects: 1, CompletedProjects: 1}}
}

// oldPing is the readiness probe Ping used to be: one small row through the
// writer.
func oldPing(s *Store) error {
	return s.write(context.Background(), func(t *txn) error {
		_, err := t.tx.ExecContext(t.ctx,
			`INSERT INTO meta (key, value) VALUES ('ping', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			t.now.Format(time.RFC3339Nano))
		return err
	})
}

func TestPingIsNotReadyFromAFailedCommitUntilAProbeAsLargeAsADeliveryCommits(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{MaxBody: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RecordWebhook(ctx, webhook("job-0", 6000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("healthy store: Ping: %v", err)
	}

	fillDisk(t, s)
	if _, err := s.RecordWebhook(ctx, webhook("job-1", 6000)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("delivery on a full disk: got %v, want ErrUnavailable", err)
	}
	// The bug: a small probe row still fits, so the old Ping said ready.
	if err := oldPing(s); err != nil {
		t.Fatalf("old Ping on the full disk: %v; the test needs it to fit, as it did when /readyz lied", err)
	}
	for i := range 2 { // the small write above did not clear it, nor does asking again
		err := s.Ping(ctx)
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
			t.Fatalf("Ping %d after a failed delivery: got %v, want ErrUnavailable saying the disk is full", i+1, err)
		}
	}

	freeDisk(t, s)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once there is room again: %v; its probe should have committed", err)
	}
	if _, err := s.RecordWebhook(ctx, webhook("job-1", 6000)); err != nil {
		t.Fatalf("delivery once there is room again: %v", err)
	}
	var probes int
	if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM meta WHERE key = 'probe'`).Scan(&probes); err != nil || probes != 0 {
		t.Errorf("probe rows left: got %d, %v; want the probe's bytes given back", probes, err)
	}
}

func TestADeliveryThatCommitsMakesTheStoreReadyAgain(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{MaxBody: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillDisk(t, s)
	if _, err := s.RecordWebhook(ctx, webhook("job-1", 6000)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("delivery on a full disk: got %v, want ErrUnavailable", err)
	}
	freeDisk(t, s)
	if _, err := s.RecordWebhook(ctx, webhook("job-2", 6000)); err != nil {
		t.Fatal(err)
	}
	// Full again, so Ping's own probe could not commit: only the delivery
	// above can have made it ready.
	fillDisk(t, s)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after a delivery committed: %v; want ready", err)
	}
	// A smaller write than the one that failed proves nothing.
	if _, err := s.RecordWebhook(ctx, webhook("job-3", 6000)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("delivery on a full disk: got %v, want ErrUnavailable", err)
	}
	freeDisk(t, s)
	if _, err := s.RecordWebhook(ctx, webhook("job-4", 10)); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, s)
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after only a smaller delivery committed: got %v, want ErrUnavailable", err)
	}
}
