package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// The helper process: when the test binary is started with these variables
// set, TestHelperProcess does what they say instead of testing. holdEnv
// holds a store open until its stdin closes; openEnv prints what Open says.
const (
	holdEnv = "NOUVELHOOK_STORE_TEST_HOLD"
	openEnv = "NOUVELHOOK_STORE_TEST_OPEN"
)

func TestHelperProcess(t *testing.T) {
	ctx := context.Background()
	if path := os.Getenv(holdEnv); path != "" {
		s, err := sqlite.Open(ctx, path, sqlite.Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		s.Close()
		os.Exit(0)
	}
	if paths := os.Getenv(openEnv); paths != "" {
		for _, path := range strings.Split(paths, "\n") {
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				fmt.Println(err)
				continue
			}
			s.Close()
			fmt.Println("opened")
		}
		os.Exit(0)
	}
}

// helper starts the test binary as a helper process with env added.
func helper(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestOpenRefusesASecondStoreOnTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	first, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(ctx, path, sqlite.Options{})
	want := fmt.Sprintf("database %s is in use by another nouvelhook process (pid %d)", path, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("second Open in the same process: got %v, want %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v; Close must release the file", err)
	}
	second.Close()
}

func TestOpenRefusesAFileHeldByAnotherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nh.db")
	cmd := helper(t, holdEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("holder: got %q, %v; want ready", line, err)
	}

	_, err = sqlite.Open(ctx, path, sqlite.Options{})
	want := fmt.Sprintf("database %s is in use by another nouvelhook process (pid %d)", path, cmd.Process.Pid)
	if err == nil || err.Error() != want {
		t.Fatalf("Open while another process holds the file: got %v, want %q", err, want)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after the holder exited: %v", err)
	}
	s.Close()
}

// makeLog makes a real log of about pages pages and closes it, which
// checkpoints the WAL into the file.
func makeLog(t *testing.T, path string, pages int) {
	t.Helper()
	s := openStore(t, path)
	body := bytes.Repeat([]byte("x"), 3000)
	for i := 0; i < pages; i++ {
		_, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{Body: body,
			ReceivedAt: time.Now(), Attempt: 1, Report: report("job-"+strconv.Itoa(i), "completed")})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesFilesThatAreNotAHealthyLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	empty := filepath.Join(dir, "empty.db")
	writeFile(t, empty, nil)
	text := filepath.Join(dir, "notes.db")
	writeFile(t, text, []byte(strings.Repeat("these are notes, not a database\n", 300)))

	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
		INSERT INTO customers (name) VALUES ('a'), ('b')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A real log with 20 pages in its middle overwritten.
	corrupt := filepath.Join(dir, "corrupt.db")
	makeLog(t, corrupt, 600)
	f, err := os.OpenFile(corrupt, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	pages := info.Size() / pageSize
	if pages < 100 {
		t.Fatalf("the log has %d pages; want enough to overwrite 20 in the middle", pages)
	}
	garbage := make([]byte, 20*pageSize)
	for i := range garbage {
		garbage[i] = byte(rand.N(256))
	}
	if _, err := f.WriteAt(garbage, pages/2*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"empty file", empty, []string{"database " + empty + " is an empty (0-byte) file", "delete it to start a new one"}},
		{"text file", text, []string{"database " + text + " is not a SQLite database"}},
		{"foreign SQLite database", foreign, []string{"database " + foreign + " is a SQLite database but not a nouvelhook log"}},
		{"20 overwritten pages", corrupt, []string{"database " + corrupt + " is corrupt", "restore it from a backup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := sqlite.Open(ctx, tc.path, sqlite.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded; want it refused")
			}
			t.Log(err)
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q, want one line", err)
			}
			after, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("a refused file was changed")
			}
		})
	}

	// The same log before the damage opens, and so does a new one.
	healthy := filepath.Join(dir, "healthy.db")
	makeLog(t, healthy, 50)
	for _, path := range []string{healthy, filepath.Join(dir, "new", "nh.db")} {
		s, err := sqlite.Open(ctx, path, sqlite.Options{})
		if err != nil {
			t.Fatalf("Open(%s): %v", path, err)
		}
		s.Close()
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSaysWhatIsWrongWithThePath checks the errors that SQLite would
// report as "unable to open database file (14)". A read-only folder denies
// nothing to root, so as root that case runs in a helper process under
// another uid rather than being skipped.
func TestOpenSaysWhatIsWrongWithThePath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("x"))
	uid := fmt.Sprintf("(uid %d)", os.Getuid())
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"path is a directory", dir, []string{"database " + dir + " is a directory", uid}},
		{"parent is a file", filepath.Join(file, "sub", "nh.db"), []string{"cannot create its folder", file, "not a directory", uid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sqlite.Open(ctx, tc.path, sqlite.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded; want it refused")
			}
			t.Log(err)
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "unable to open database file") {
				t.Errorf("got SQLite's %q, want what is wrong", err)
			}
		})
	}
}

func TestOpenSaysPermissionDenied(t *testing.T) {
	// A folder and a binary that the unprivileged uid can reach.
	base, err := os.MkdirTemp("", "nh-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(base, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readOnly, 0o555); err != nil { // past the umask
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	notMine := filepath.Join(open, "nh.db")
	makeLog(t, notMine, 1)
	if err := os.Chmod(notMine, 0o444); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(readOnly, "nh.db"), filepath.Join(readOnly, "sub", "nh.db"), notMine}

	var out string
	uid := os.Getuid()
	if uid != 0 {
		cmd := helper(t, openEnv+"="+strings.Join(paths, "\n"))
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		out = string(b)
	} else {
		// Root passes every permission check, so the helper runs as nobody.
		uid = 65534
		bin := filepath.Join(base, "store.test")
		exe, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), openEnv+"="+strings.Join(paths, "\n"), "HOME="+base, "GOCOVERDIR=")
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as uid %d: %v: %s", uid, err, b)
		}
		out = string(b)
	}
	t.Log(out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("helper printed %q; want one line per path", out)
	}
	for i, want := range [][]string{
		{"database " + paths[0], "cannot write its folder " + readOnly, "permission denied", fmt.Sprintf("(uid %d)", uid)},
		{"database " + paths[1], "cannot create its folder", "permission denied", fmt.Sprintf("(uid %d)", uid)},
		{"database " + paths[2], "permission denied", fmt.Sprintf("uid %d cannot read and write it", uid)},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("Open(%s): got %q, want it to say %q", paths[i], lines[i], w)
			}
		}
	}
}

// BenchmarkOpenCheck measures what the start-up checks cost on a big log:
// Open and Close (which includes quick_check), and quick_check alone. The
// logs are made by direct inserts, a job and one delivery each, with bodies
// of the size Nouvel sends. Run with
//
//	go test -run '^$' -bench BenchmarkOpenCheck -benchtime 5x ./store/
func BenchmarkOpenCheck(b *testing.B) {
	for _, jobs := range []int{100_000, 1_000_000} {
		path := filepath.Join(b.TempDir(), "nh.db")
		s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		for _, q := range []string{
			`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO jobs (job_id, status, terminal, total_projects, completed_projects, projects, source,
				progress, created_at, updated_at, terminal_at, seq)
			SELECT 'job-' || i, 'completed', 1, 1, 1,
				printf('[{"projectId":"p%d","title":"A video about the sea","status":"completed","videoUrl":"https://cdn.example/v/%d.mp4"}]', i, i),
				'webhook', 100, i, i, i, i FROM n`,
			`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO deliveries (job_row, job_id, received_at, attempt, status, outcome, body, body_hash)
			SELECT i, 'job-' || i, i, 1, 'completed', 'accepted', randomblob(377), randomblob(32) FROM n`,
		} {
			if _, err := db.Exec(q, jobs); err != nil {
				b.Fatal(err)
			}
		}
		db.Close()
		info, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("jobs=%d/open", jobs), func(b *testing.B) {
			for b.Loop() {
				s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(info.Size())/(1<<20), "file-MiB")
		})
		b.Run(fmt.Sprintf("jobs=%d/quick_check", jobs), func(b *testing.B) {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for b.Loop() {
				var res string
				if err := db.QueryRow(`PRAGMA quick_check(1)`).Scan(&res); err != nil || res != "ok" {
					b.Fatalf("quick_check: %s, %v", res, err)
				}
			}
		})
	}
}

// TestOpenInAFolderNobodyMayWrite uses /sys, where creating a file is
// denied even to root, so it runs the same as root and as anyone else.
func TestOpenInAFolderNobodyMayWrite(t *testing.T) {
	if _, err := os.Stat("/sys/kernel"); err != nil {
		t.Skipf("no sysfs here: %v", err)
	}
	path := "/sys/nouvelhook-test.db"
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded; want it refused", path)
	}
	t.Log(err)
	msg := err.Error()
	if !strings.Contains(msg, "database "+path) || !strings.Contains(msg, fmt.Sprintf("(uid %d)", os.Getuid())) ||
		!(strings.Contains(msg, "permission denied") || strings.Contains(msg, "read-only file system")) {
		t.Fatalf("got %q, want it to name %s and uid %d and say permission denied or read-only file system", msg, path, os.Getuid())
	}
}
