package handler

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// openStore opens a store in a temp dir, closed at the end of the test.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// serveOn runs e's own http.Server, with the timeouts and limits the
// handler set on it, on a free loopback port and returns its address.
func serveOn(t *testing.T, e *echo.Echo) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Server.Serve(ln)
	t.Cleanup(func() { e.Server.Close() })
	return ln.Addr().String()
}

func TestHostOK(t *testing.T) {
	tests := []struct {
		host, adminHost string
		want            bool
	}{
		{"127.0.0.1:8081", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.8.9.10:8081", "127.0.0.1", true},
		{"localhost:8081", "127.0.0.1", true},
		{"LOCALHOST.", "127.0.0.1", true},
		{"[::1]:8081", "127.0.0.1", true},
		{"[::1]", "127.0.0.1", true},
		{"[::ffff:127.0.0.1]:8081", "127.0.0.1", true},
		{"admin.internal:8081", "admin.internal", true},
		{"rebind.attacker.example:8081", "127.0.0.1", false},
		{"localhost.attacker.example", "127.0.0.1", false},
		{"127.0.0.1.nip.io:8081", "127.0.0.1", false},
		{"10.0.0.5:8081", "127.0.0.1", false},
		{"[fe80::1%25eth0]:8081", "127.0.0.1", false},
		{"0.0.0.0:8081", "127.0.0.1", false},
		{"", "127.0.0.1", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := hostOK(tt.host, normalHost(tt.adminHost)); got != tt.want {
			t.Errorf("hostOK(%q, %q): got %v, want %v", tt.host, tt.adminHost, got, tt.want)
		}
	}
}

func TestOriginOK(t *testing.T) {
	tests := []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:8081", "127.0.0.1:8081", true},
		{"https://127.0.0.1:8081", "127.0.0.1:8081", true},
		{"http://localhost:3000", "127.0.0.1:8081", true},
		{"http://[::1]:5173", "127.0.0.1:8081", true},
		{"http://127.0.0.2", "127.0.0.1:8081", true},
		{"http://admin.internal:8081", "admin.internal:8081", true},
		{"http://evil.example", "127.0.0.1:8081", false},
		{"http://evil.example:8081", "127.0.0.1:8081", false},
		{"http://localhost.evil.example", "127.0.0.1:8081", false},
		{"null", "127.0.0.1:8081", false},
		{"file://", "127.0.0.1:8081", false},
		{"chrome-extension://abc", "127.0.0.1:8081", false},
		{"http://127.0.0.1:8081/path", "127.0.0.1:8081", false},
		{"http://user@127.0.0.1:8081", "127.0.0.1:8081", false},
		{"127.0.0.1:8081", "127.0.0.1:8081", false},
	}
	for _, tt := range tests {
		if got := originOK(tt.origin, tt.host); got != tt.want {
			t.Errorf("originOK(%q, %q): got %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}

func TestIsJSON(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON", true},
		{"text/plain", false},
		{"text/plain; charset=utf-8", false},
		{"application/x-www-form-urlencoded", false},
		{"multipart/form-data; boundary=x", false},
		{"application/json-seq", false},
		{"application/vnd.api+json", false},
		{"", false},
		{"application/json;;;", false},
	}
	for _, tt := range tests {
		if got := isJSON(tt.ct); got != tt.want {
			t.Errorf("isJSON(%q): got %v, want %v", tt.ct, got, tt.want)
		}
	}
}

// TestAdminGuard runs every rule through the real admin server: without a
// token it refuses foreign Hosts (421), cross-site Origins (403) and POSTs
// that are not JSON (415), on every route; with a token only the 415 stays.
func TestAdminGuard(t *testing.T) {
	st := openStore(t)
	open := serveOn(t, NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop(), AdminHost: "127.0.0.1"}))
	withToken := serveOn(t, NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop(), AdminHost: "0.0.0.0", AdminToken: "tok"}))
	const rebind = "rebind.attacker.example:8081"
	const evil = "http://evil.example"
	tests := []struct {
		name          string
		token         bool
		method, path  string
		host, origin  string
		ctype, accept string
		want          int
	}{
		{name: "loopback address", method: "GET", path: "/v1/jobs", want: 200},
		{name: "localhost", method: "GET", path: "/v1/jobs", host: "localhost:8081", want: 200},
		{name: "ipv6 loopback", method: "GET", path: "/v1/stats", host: "[::1]:8081", want: 200},
		{name: "rebound host", method: "GET", path: "/v1/jobs", host: rebind, want: 421},
		{name: "rebound host on stats", method: "GET", path: "/v1/stats", host: rebind, want: 421},
		{name: "rebound host on metrics", method: "GET", path: "/metrics", host: rebind, want: 421},
		{name: "rebound host on readyz", method: "GET", path: "/readyz", host: rebind, want: 421},
		{name: "rebound host on events", method: "GET", path: "/v1/events", host: rebind, want: 421},
		{name: "rebound host on the event stream", method: "GET", path: "/v1/events", host: rebind, accept: "text/event-stream", want: 421},
		{name: "rebound host on an unknown route", method: "GET", path: "/nope", host: rebind, want: 421},
		{name: "healthz answers any host", method: "GET", path: "/healthz", host: rebind, want: 200},
		{name: "healthz answers any origin", method: "GET", path: "/healthz", origin: evil, want: 200},
		{name: "cross-site origin", method: "GET", path: "/v1/jobs", origin: evil, want: 403},
		{name: "cross-site origin on the event stream", method: "GET", path: "/v1/events", origin: evil, accept: "text/event-stream", want: 403},
		{name: "null origin", method: "GET", path: "/v1/stats", origin: "null", want: 403},
		{name: "own origin", method: "GET", path: "/v1/jobs", origin: "http://127.0.0.1:8081", host: "127.0.0.1:8081", want: 200},
		{name: "loopback origin", method: "GET", path: "/v1/jobs", origin: "http://localhost:3000", want: 200},
		{name: "cross-site JSON post", method: "POST", path: "/v1/jobs", origin: evil, ctype: "application/json", want: 403},
		{name: "text/plain post", method: "POST", path: "/v1/jobs", ctype: "text/plain", want: 415},
		{name: "form post", method: "POST", path: "/v1/jobs", ctype: "application/x-www-form-urlencoded", want: 415},
		{name: "multipart post", method: "POST", path: "/v1/jobs", ctype: "multipart/form-data; boundary=b", want: 415},
		{name: "post without a content type", method: "POST", path: "/v1/jobs", want: 415},
		{name: "text/plain post to generate", method: "POST", path: "/v1/generate", ctype: "text/plain", want: 415},
		{name: "text/plain post to forwards retry", method: "POST", path: "/v1/forwards/retry", ctype: "text/plain", want: 415},
		{name: "cross-site post to forwards resume", method: "POST", path: "/v1/forwards/resume", origin: evil, ctype: "application/json", want: 403},
		{name: "rebound host on a delivery body", method: "GET", path: "/v1/jobs/guard-job/deliveries/1/body", host: rebind, want: 421},
		{name: "rebound host on a timeline", method: "GET", path: "/v1/jobs/guard-job/timeline", host: rebind, want: 421},
		{name: "JSON post", method: "POST", path: "/v1/jobs", ctype: "application/json; charset=utf-8", want: 201},

		{name: "token: rebound host", token: true, method: "GET", path: "/v1/jobs", host: rebind, want: 200},
		{name: "token: cross-site origin", token: true, method: "GET", path: "/v1/jobs", origin: evil, want: 200},
		{name: "token: text/plain post", token: true, method: "POST", path: "/v1/jobs", ctype: "text/plain", want: 415},
		{name: "token: JSON post", token: true, method: "POST", path: "/v1/jobs", ctype: "application/json", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := open
			if tt.token {
				addr = withToken
			}
			req, err := http.NewRequest(tt.method, "http://"+addr+tt.path, strings.NewReader(`{"jobId":"guard-job"}`))
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == "GET" {
				req.Body, req.ContentLength = nil, 0
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.token {
				req.Header.Set("Authorization", "Bearer tok")
			}
			for k, v := range map[string]string{"Origin": tt.origin, "Content-Type": tt.ctype, "Accept": tt.accept} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends an event stream that was let through
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.want)
			}
		})
	}
}
