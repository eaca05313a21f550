package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// mainStderr is everything a command would print on stderr as the real
// binary: run's own output, then main's one line for the error.
func mainStderr(errOut string, err error) (string, int) {
	var b bytes.Buffer
	b.WriteString(errOut)
	code := exitCode(err, &b)
	return b.String(), code
}

func TestHealthcheckLocalURL(t *testing.T) {
	tests := []struct {
		listen, want string
	}{
		{":8080", "http://127.0.0.1:8080"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000"},
		{"[::]:8080", "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"[::1]:8080", "http://[::1]:8080"},
		{"10.1.2.3:80", "http://10.1.2.3:80"},
		{"localhost:8080", "http://localhost:8080"},
	}
	for _, tt := range tests {
		got, err := localURL(tt.listen)
		if err != nil || got != tt.want {
			t.Errorf("localURL(%q): got %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
	for _, bad := range []string{"8080", ":0", "host:", "a:b:c"} {
		if got, err := localURL(bad); err == nil {
			t.Errorf("localURL(%q): got %q, want an error", bad, got)
		}
	}
}

// A healthcheck against the real service, found through NOUVELHOOK_LISTEN
// as a probe in the same container finds it.
func TestHealthcheckRealService(t *testing.T) {
	s := startService(t, nil)
	env := map[string]string{"NOUVELHOOK_LISTEN": strings.TrimPrefix(s.Public, "http://")}
	for _, args := range [][]string{{"healthcheck"}, {"healthcheck", "--ready"}} {
		out, errOut, err := runCLI(context.Background(), env, "", args...)
		if err != nil || out != "" || errOut != "" {
			t.Fatalf("%v against a running service: got %q, %q, %v; want silence and exit 0", args, out, errOut, err)
		}
	}
	// Not the admin listener: its /healthz would answer too, so the public
	// address must be the one dialled.
	env["NOUVELHOOK_LISTEN"] = strings.TrimPrefix(closedURL(t), "http://")
	_, errOut, err := runCLI(context.Background(), env, "", "healthcheck")
	if text, code := mainStderr(errOut, err); code != 1 || strings.Count(text, "\n") != 1 ||
		!strings.HasPrefix(text, "nouvelhook: healthcheck: GET http://127.0.0.1:") {
		t.Errorf("healthcheck with nothing listening: got exit %d and %q, want exit 1 and one line naming the URL", code, text)
	}
}

func TestHealthcheck(t *testing.T) {
	var readyCode atomic.Int32
	var paths atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.Method + " " + r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		case "/readyz":
			w.WriteHeader(int(readyCode.Load()))
			w.Write([]byte("{\"ready\":\n false}"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	port := addr[strings.LastIndex(addr, ":"):]

	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		ready     int
		wantPath  string
		wantCode  int
		wantError string
	}{
		{"healthz via env", map[string]string{"NOUVELHOOK_LISTEN": addr}, nil, 200, "GET /healthz", 0, ""},
		{"wildcard host", map[string]string{"NOUVELHOOK_LISTEN": "0.0.0.0" + port}, nil, 200, "GET /healthz", 0, ""},
		{"ready", map[string]string{"NOUVELHOOK_LISTEN": "[::]" + port}, []string{"--ready"}, 200, "GET /readyz", 0, ""},
		{"not ready", map[string]string{"NOUVELHOOK_LISTEN": addr}, []string{"--ready"}, 503, "GET /readyz", 1,
			`nouvelhook: healthcheck: GET http://` + addr + `/readyz: 503 {"ready": false}` + "\n"},
		{"flag wins", map[string]string{"NOUVELHOOK_LISTEN": "127.0.0.1:1"}, []string{"--listen", addr}, 200, "GET /healthz", 0, ""},
		{"bad listen", map[string]string{"NOUVELHOOK_LISTEN": "8080"}, nil, 200, "", 2,
			"nouvelhook: healthcheck: NOUVELHOOK_LISTEN (\"8080\") must be host:port with a fixed port, like :8080\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readyCode.Store(int32(tt.ready))
			paths.Store("")
			out, errOut, err := runCLI(context.Background(), tt.env, "", append([]string{"healthcheck"}, tt.args...)...)
			text, code := mainStderr(errOut, err)
			if code != tt.wantCode || text != tt.wantError || out != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d, stderr %q", code, out, text, tt.wantCode, tt.wantError)
			}
			if got := paths.Load().(string); got != tt.wantPath {
				t.Errorf("asked %q, want %q", got, tt.wantPath)
			}
		})
	}
}

// A listener that accepts and never answers fails the check at --timeout
// rather than hanging the probe.
func TestHealthcheckTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	_, errOut, err := runCLI(context.Background(), map[string]string{"NOUVELHOOK_LISTEN": strings.TrimPrefix(srv.URL, "http://")},
		"", "healthcheck", "--timeout", "50ms")
	if text, code := mainStderr(errOut, err); code != 1 || !strings.HasSuffix(text, ": no answer within 50ms\n") {
		t.Errorf("healthcheck of a silent listener: got exit %d, %q; want exit 1 and no answer within 50ms", code, text)
	}
}
