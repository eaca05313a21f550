package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "test-secret"

// syncBuffer is a bytes.Buffer safe for the service's logger and the test
// to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testService is `nouvelhook serve` run in process on free loopback ports,
// with its database in a temp dir.
type testService struct {
	t      *testing.T
	Public string // base URL of the public listener
	Admin  string // base URL of the admin listener
	DB     string
	Env    map[string]string
	Log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startService runs serve with env on top of test defaults and waits until it
// listens. It is stopped at the end of the test.
func startService(t *testing.T, env map[string]string) *testService {
	t.Helper()
	full := map[string]string{
		"NOUVEL_WEBHOOK_SECRET":   testSecret,
		"NOUVELHOOK_LISTEN":       "127.0.0.1:0",
		"NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:0",
		"NOUVELHOOK_DB":           filepath.Join(t.TempDir(), "nouvelhook.db"),
		"NOUVELHOOK_LOG_LEVEL":    "debug",
	}
	for k, v := range env {
		full[k] = v
	}
	s := &testService{t: t, DB: full["NOUVELHOOK_DB"], Env: full, Log: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- run(ctx, []string{"nouvelhook", "serve"}, mapEnv(full), nil, io.Discard, s.Log)
	}()
	t.Cleanup(func() { s.Stop() })

	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if pub, adm, ok := listeningAddrs(s.Log.String()); ok {
			s.Public, s.Admin = "http://"+pub, "http://"+adm
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("serve exited before listening: %v\n%s", err, s.Log)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not listen within 20s:\n%s", s.Log)
	return nil
}

func listeningAddrs(log string) (pub, adm string, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			Public  string `json:"public_addr"`
			Admin   string `json:"admin_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "nouvelhook listening" {
			return line.Public, line.Admin, true
		}
	}
	return "", "", false
}

// Stop shuts the service down as SIGTERM would and returns run's error.
func (s *testService) Stop() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatalf("serve did not stop within 30s")
		return nil
	}
}

func mapEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// sign is the hex HMAC-SHA256 of body under secret, as Nouvel sends it.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// deliver posts body to the webhook path with the given signature header
// (none when sig is "") and returns the status and answer.
func (s *testService) deliver(body []byte, sig string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.Public+"/webhooks/nouvel", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Nouvel-Signature", sig)
	}
	return do(s.t, req)
}

// adminGet GETs path on the admin listener and decodes a JSON answer into v
// when v is not nil.
func (s *testService) adminGet(path string, v any) int {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.Admin+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	code, body := do(s.t, req)
	if v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			s.t.Fatalf("GET %s: %d %q is not JSON: %v", path, code, body, err)
		}
	}
	return code
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// cli runs a client command against the service and returns its stdout,
// stderr and error.
func (s *testService) cli(args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	env := map[string]string{"NOUVELHOOK_ADMIN_URL": s.Admin, "NOUVELHOOK_ADMIN_TOKEN": s.Env["NOUVELHOOK_ADMIN_TOKEN"]}
	err := run(context.Background(), append([]string{"nouvelhook"}, args...), mapEnv(env), strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// event is a webhook body for jobID with the given status.
func event(jobID, status string) []byte {
	return []byte(`{"event":"job.completed","jobId":"` + jobID + `","status":"` + status +
		`","totalProjects":1,"completedProjects":1,"failedProjects":0,"projects":[{"projectId":"p-` + jobID +
		`","title":"Ad","status":"completed","videoUrl":"https://cdn.example/` + jobID + `.mp4"}]}`)
}

func TestServeStartsAndStops(t *testing.T) {
	s := startService(t, nil)
	if code := s.adminGet("/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz: got %d, want 200", code)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: got %v, want nil (exit 0)", err)
	}
}
