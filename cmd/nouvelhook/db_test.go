package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// db backup copies the log of a running service, while webhooks keep coming,
// into a file that opens as a store holding every job committed before.
func TestDBBackupWhileServing(t *testing.T) {
	s := startService(t, nil)
	const before = 20
	for i := range before {
		s.mustDeliver(fmt.Sprintf("job-before-%d", i), "completed")
	}

	// Webhooks go on during the backups.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := event(fmt.Sprintf("job-during-%d", i), "completed")
			s.deliver(body, sign(testSecret, body))
		}
	})

	dir := t.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"--db", nil, []string{"--db", s.DB, filepath.Join(dir, "flag.db")}},
		{"NOUVELHOOK_DB", map[string]string{"NOUVELHOOK_DB": s.DB}, []string{filepath.Join(dir, "env.db")}},
	}
	for _, tt := range tests {
		out, errOut, err := runCLI(context.Background(), tt.env, "", append([]string{"db", "backup"}, tt.args...)...)
		dst := tt.args[len(tt.args)-1]
		if err != nil || !strings.HasPrefix(out, "backed up "+s.DB+" to "+dst+" (") {
			t.Errorf("db backup %s: got %q, %q, %v; want success", tt.name, out, errOut, err)
		}
	}
	close(stop)
	wg.Wait()

	for _, tt := range tests {
		dst := tt.args[len(tt.args)-1]
		st, err := sqlite.Open(context.Background(), dst, sqlite.Options{})
		if err != nil {
			t.Fatalf("open the copy made with %s: %v", tt.name, err)
		}
		for i := range before {
			id := fmt.Sprintf("job-before-%d", i)
			if j, err := st.JobWithDeliveries(context.Background(), id); err != nil || j.Status != store.StatusCompleted || len(j.Deliveries) != 1 {
				t.Errorf("copy made with %s: job %s: got status %q with %d deliveries, %v; want completed with its delivery",
					tt.name, id, j.Status, len(j.Deliveries), err)
			}
		}
		stats, err := st.Stats(context.Background())
		if err != nil || stats.Jobs < before || stats.Jobs != stats.ByStatus[string(store.StatusCompleted)] {
			t.Errorf("copy made with %s: got stats %+v, %v; want at least %d jobs, all completed", tt.name, stats, err, before)
		}
		st.Close()
	}
	// The service did not notice.
	if code := s.adminGet("/readyz", nil); code != 200 {
		t.Errorf("readyz after the backups: got %d, want 200", code)
	}
}

func TestDBBackupRefusals(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(dir, "db-url")
	if err := os.WriteFile(urlFile, []byte("postgresql://u:secret@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startService(t, nil)
	s.mustDeliver("job-1", "completed")
	env := map[string]string{"NOUVELHOOK_DB": s.DB}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantLine string // a part of the last line of stderr
	}{
		{"no command", env, []string{"db"}, 2, "db: no command given"},
		{"unknown command", env, []string{"db", "restore", "a", "b"}, 2, `db: unknown command "restore"`},
		{"no file", env, []string{"db", "backup"}, 2, "db backup: missing FILE"},
		{"two files", env, []string{"db", "backup", "a.db", "b.db"}, 2, `unexpected argument "b.db"`},
		{"existing file", env, []string{"db", "backup", existing}, 1, "already exists"},
		{"missing log", nil, []string{"db", "backup", "--db", filepath.Join(dir, "nope.db"), filepath.Join(dir, "x.db")}, 1, "does not exist"},
		{"database URL", map[string]string{"NOUVELHOOK_DB": "postgres://u:secret@db/x"}, []string{"db", "backup", filepath.Join(dir, "y.db")}, 2, "not a SQLite file"},
		{"database URL in a file", map[string]string{"NOUVELHOOK_DB_FILE": urlFile}, []string{"db", "backup", filepath.Join(dir, "y.db")}, 2,
			"the log is a Postgres database (postgresql://u:xxxxx@db/x), not a SQLite file"},
		{"database URL flag", nil, []string{"db", "backup", "--db", "postgres://u:secret@db/x", filepath.Join(dir, "y.db")}, 2, "not a SQLite file"},
		{"bad database URL", map[string]string{"NOUVELHOOK_DB": "postgres://u:secret@db/"}, []string{"db", "backup", filepath.Join(dir, "y.db")}, 2,
			"NOUVELHOOK_DB (postgres://u:xxxxx@db/) has no database name"},
		{"database and its file", map[string]string{"NOUVELHOOK_DB": s.DB, "NOUVELHOOK_DB_FILE": urlFile}, []string{"db", "backup", filepath.Join(dir, "y.db")}, 2,
			"NOUVELHOOK_DB and NOUVELHOOK_DB_FILE are both set"},
	}
	for _, tt := range tests {
		out, errOut, err := runCLI(context.Background(), tt.env, "", tt.args...)
		text, code := mainStderr(errOut, err)
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		last := lines[len(lines)-1]
		if code != tt.wantCode || out != "" || !strings.HasPrefix(last, "nouvelhook: ") || !strings.Contains(last, tt.wantLine) {
			t.Errorf("%s: got exit %d, stdout %q, last line %q; want exit %d and a line with %q", tt.name, code, out, last, tt.wantCode, tt.wantLine)
		}
		if strings.Contains(text, "secret") {
			t.Errorf("%s: stderr holds the URL's password: %q", tt.name, text)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("the existing file: got %q, want it untouched", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); !os.IsNotExist(err) {
		t.Errorf("a failed backup left its copy behind: %v", err)
	}
}
