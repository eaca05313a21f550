package handler

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

// lockBuffer is a bytes.Buffer the server's logger and the test can share.
type lockBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far whose message contains
// msg.
func (b *lockBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if s, _ := m["message"].(string); strings.Contains(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// A body trickled into the admin API is cut at the read timeout, not read
// for as long as the sender likes.
func TestAdminCutsATrickledBody(t *testing.T) {
	addr := serveOn(t, NewAdmin(Deps{Store: openStore(t), Metrics: NewMetrics(nil), Logger: zerolog.Nop(),
		ReadTimeout: 300 * time.Millisecond}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // fail rather than hang
	const size = 500                                   // 10 s at one byte per 20 ms
	fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
	var sent atomic.Int64
	go func() {
		for range size {
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
			sent.Add(1)
			time.Sleep(20 * time.Millisecond) // the slow client's pace
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
	}
	if n := sent.Load(); n >= size {
		t.Fatalf("the server read all %d trickled bytes (answer %v, %v); want the body cut at the read timeout", n, resp, err)
	}
}

// Long-polls and event streams are about the response: a read timeout far
// shorter than the stream must not end it.
func TestAdminReadTimeoutLeavesEventStreamsOpen(t *testing.T) {
	st := openStore(t)
	const timeout = 100 * time.Millisecond
	addr := serveOn(t, NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop(), ReadTimeout: timeout}))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	// A deadline, so that a stream that never shows the job fails the test
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(5 * timeout) // past the read deadline the request had

	deliver(t, st, []byte(`{"jobId":"stream-job","status":"completed","totalProjects":1,"completedProjects":1,"failedProjects":0}`))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `"stream-job"`) {
			return
		}
	}
	t.Fatalf("the stream ended (%v) before the job's event; want it open past the read timeout", sc.Err())
}

// flakyListener fails its first Accept as a process out of file
// descriptors would.
type flakyListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failed.CompareAndSwap(false, true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// net/http's own messages, such as accept errors, are structured log lines.
func TestAcceptErrorsAreLogLines(t *testing.T) {
	var logs lockBuffer
	e := NewPublic(Deps{Store: openStore(t), Metrics: NewMetrics(nil), Logger: zerolog.New(&logs), WebhookPath: "/webhooks/nouvel"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Server.Serve(&flakyListener{Listener: ln})
	defer e.Server.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := logs.lines(t, "Accept error")
	if len(got) != 1 || got[0]["level"] != "error" || got[0]["component"] != "http" ||
		!strings.Contains(got[0]["message"].(string), "too many open files") {
		t.Fatalf("got log lines %v, want one error line from component http naming the accept error", got)
	}
}

// A replayed signed but unusable body writes one warn line per interval,
// which says how many it left out.
func TestUnusableDeliveryLogIsRateLimited(t *testing.T) {
	var logs lockBuffer
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e := NewPublic(Deps{
		Store: openStore(t), Verifier: NewVerifier([]string{"s"}), Metrics: NewMetrics(nil), Logger: zerolog.New(&logs),
		WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20, Now: func() time.Time { return time.Unix(0, now.Load()) },
	})
	url := "http://" + serveOn(t, e) + "/webhooks/nouvel"
	post := func(i int) {
		t.Helper()
		body := []byte(fmt.Sprintf(`{"jobId":"bad-%d","status":"running"}`, i))
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set(SignatureHeader, fmt.Sprintf("%x", Sign([]byte("s"), body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("delivery %d: got %d, want 400", i, resp.StatusCode)
		}
	}
	for i := range 5 {
		post(i)
	}
	const msg = "not a usable event"
	if got := logs.lines(t, msg); len(got) != 1 || got[0]["suppressed"] != 0.0 {
		t.Fatalf("after 5 unusable deliveries: got %v, want one line with suppressed 0", got)
	}
	now.Add(int64(invalidLogEvery))
	post(5)
	got := logs.lines(t, msg)
	if len(got) != 2 || got[1]["suppressed"] != 4.0 {
		t.Fatalf("after the interval: got %v, want a second line with suppressed 4", got)
	}
}

// lockedOut is a reconciler locked out by Nouvel.
type lockedOut struct{}

func (lockedOut) Ready() error { return errors.New("Nouvel answered 401") }
func (lockedOut) Status() any  { return nil }
func (lockedOut) Track(context.Context, string) (store.Job, bool, error) {
	return store.Job{}, false, errors.New("locked out")
}
func (lockedOut) Submit(context.Context, []byte) (json.RawMessage, error) {
	return nil, errors.New("locked out")
}

// The public /readyz is about taking webhooks: the store only, and nothing
// but {"ready":bool}; the admin one adds the reconciler and a reason.
func TestPublicReadyz(t *testing.T) {
	st := openStore(t)
	var now atomic.Int64 // the clock readiness results are kept by
	d := Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop(), WebhookPath: "/webhooks/nouvel", Poller: lockedOut{},
		Now: func() time.Time { return time.Unix(0, now.Load()) }}
	pub, adm := serveOn(t, NewPublic(d)), serveOn(t, NewAdmin(d))
	get := func(addr string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get(pub); code != 200 || body != `{"ready":true}` {
		t.Errorf("public, reconciler locked out: got %d %s, want 200 {\"ready\":true}", code, body)
	}
	if code, body := get(adm); code != 503 || !strings.Contains(body, "reconciler") {
		t.Errorf("admin, reconciler locked out: got %d %s, want 503 naming the reconciler", code, body)
	}
	for range 5 {
		if code, _ := get(pub); code != 200 {
			t.Errorf("public, probed again within a second: got %d, want the kept 200", code)
		}
	}
	st.Close() // known without a write: the kept answer does not hide it
	if code, body := get(pub); code != 503 || body != `{"ready":false}` {
		t.Errorf("public, store closed: got %d %s, want 503 {\"ready\":false}", code, body)
	}
}

// A delivery without a well-formed signature is refused before its body is
// read: the answer comes while the announced body has not been sent, and the
// connection closes instead of waiting for it.
func TestUnsignedBodyIsNeverRead(t *testing.T) {
	e := NewPublic(Deps{Store: openStore(t), Verifier: NewVerifier([]string{"s"}), Metrics: NewMetrics(nil),
		Logger: zerolog.Nop(), WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20,
		ReadTimeout: time.Hour}) // waiting for the body would outlast the test
	addr := serveOn(t, e)
	for _, sig := range []string{"", "abc", strings.Repeat("z", 64)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second)) // fail rather than hang
		head := "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
		if sig != "" {
			head += SignatureHeader + ": " + sig + "\r\n"
		}
		io.WriteString(conn, head+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("signature %q: no answer before the body was sent: %v", sig, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Errorf("signature %q: got %d (close %v), want 401 and the connection closed", sig, resp.StatusCode, resp.Close)
		}
	}
}
