package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// TestBackupWhileWriting copies a log while deliveries keep committing, then
// opens the copy as a store: every job committed before the backup began is
// in it, and the copy passes the start-up checks (quick_check included).
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "nh.db")
	s := openStore(t, src)

	// committed counts jobs job-0 … job-(n-1), each committed before the
	// counter moves past it.
	var committed atomic.Int64
	stop, warm, quit := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(quit)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte(`{"n":1}`),
				ReceivedAt: time.Now(), Attempt: 1, Report: report(fmt.Sprintf("job-%d", i), "completed")}); err != nil {
				t.Errorf("RecordWebhook: %v", err)
				return
			}
			committed.Store(int64(i + 1))
			if i+1 == 200 {
				close(warm)
			}
		}
	}()
	select {
	case <-warm:
	case <-quit:
		t.Fatal("the writer stopped before 200 commits")
	}
	before := committed.Load()
	dst := filepath.Join(dir, "copy.db")
	err := sqlite.Backup(ctx, src, dst)
	during := committed.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	t.Logf("%d jobs committed before the backup began, %d by its end", before, during)

	c, err := sqlite.Open(ctx, dst, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open(copy): %v", err)
	}
	defer c.Close()
	for i := int64(0); i < before; i++ {
		id := fmt.Sprintf("job-%d", i)
		j, err := c.JobWithDeliveries(ctx, id)
		if err != nil {
			t.Fatalf("copy: Job(%s): %v; it was committed before the backup began", id, err)
		}
		if j.Status != "completed" || len(j.Deliveries) != 1 {
			t.Fatalf("copy: %s: got status %s with %d deliveries, want completed with 1", id, j.Status, len(j.Deliveries))
		}
	}
	info, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("copy mode: got %v, want 0600; a log holds delivered bodies", got)
	}
}

func TestBackupRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "nh.db")
	s := openStore(t, src)
	deliver(t, s, report("job-1", "completed"))

	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, tc := range []struct {
		name, src, dst, want string
	}{
		{"existing destination", src, existing, "already exists"},
		{"destination is the source", src, src, "must be a new file"},
		{"missing source", filepath.Join(dir, "missing.db"), filepath.Join(dir, "b1.db"), "does not exist"},
		{"text source", text, filepath.Join(dir, "b2.db"), "not a SQLite database"},
		{"foreign source", foreign, filepath.Join(dir, "b3.db"), "not a nouvelhook log"},
		{"source is a folder", dir, filepath.Join(dir, "b4.db"), "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sqlite.Backup(ctx, tc.src, tc.dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q, want one line", err)
			}
			if tc.dst != existing && tc.dst != src {
				if _, err := os.Stat(tc.dst); err == nil {
					t.Errorf("a failed backup left %s behind", tc.dst)
				}
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("existing destination: got %q, %v; want it untouched", b, err)
	}
}
