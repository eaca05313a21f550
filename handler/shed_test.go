package handler

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

const testGrace = 50 * time.Millisecond

// serveShed runs the public server on a ShedListener capped at max, with a
// read timeout far longer than any test, so only the listener can free a
// slot held by a slow client.
func serveShed(t *testing.T, d Deps, max int) (addr string, l *ShedListener) {
	t.Helper()
	d.ReadTimeout = time.Hour
	if d.WebhookPath == "" {
		d.WebhookPath = "/webhooks/nouvel"
	}
	e := NewPublic(d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = NewShedListener(ln, max, testGrace)
	go e.Server.Serve(l)
	t.Cleanup(func() { e.Server.Close() })
	return ln.Addr().String(), l
}

// dialRaw opens a connection with a deadline, so a test fails rather than
// hangs.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// getHealthz sends GET /healthz on c and reads the status.
func getHealthz(t *testing.T, c net.Conn, rd *bufio.Reader) int {
	t.Helper()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// When every slot is held by a client that never finishes its request, the
// next connection is served: the stalled ones are cut, not waited out.
func TestShedListenerCutsStalledClients(t *testing.T) {
	addr, l := serveShed(t, Deps{Store: openStore(t), Metrics: NewMetrics(nil), Logger: zerolog.Nop()}, 2)
	var stalled []net.Conn
	for _, head := range []string{
		"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", // headers never end
		"POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nX-Nouvel-Signature: " + strings.Repeat("ab", 32) + "\r\nContent-Length: 100\r\n\r\n{", // body never ends
	} {
		c := dialRaw(t, addr)
		io.WriteString(c, head)
		stalled = append(stalled, c)
	}
	c := dialRaw(t, addr)
	if code := getHealthz(t, c, bufio.NewReader(c)); code != http.StatusOK {
		t.Fatalf("third client: got %d, want 200", code)
	}
	cut := 0
	for _, s := range stalled {
		s.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := s.Read(make([]byte, 1)); err != nil {
			cut++
		}
	}
	if cut == 0 {
		t.Errorf("no stalled client was cut")
	}
	if n := l.Open(); n > 2 {
		t.Errorf("open connections: got %d, want at most 2", n)
	}
}

// An idle keep-alive connection holding the only slot is cut for a new one.
func TestShedListenerCutsIdleKeepAlive(t *testing.T) {
	addr, _ := serveShed(t, Deps{Store: openStore(t), Metrics: NewMetrics(nil), Logger: zerolog.Nop()}, 1)
	idle := dialRaw(t, addr)
	if code := getHealthz(t, idle, bufio.NewReader(idle)); code != http.StatusOK {
		t.Fatalf("first request: got %d", code)
	}
	c := dialRaw(t, addr)
	if code := getHealthz(t, c, bufio.NewReader(c)); code != http.StatusOK {
		t.Fatalf("second connection: got %d, want 200", code)
	}
}

// blockingRecorder holds every delivery until released.
type blockingRecorder struct {
	entered chan struct{}
	release chan struct{}
}

func (r *blockingRecorder) RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	r.entered <- struct{}{}
	<-r.release
	return store.OutcomeAccepted, nil
}

// A delivery whose body has been read is answered, however long it takes
// and however many connections wait: it is never cut.
func TestShedListenerNeverCutsADeliveryBeingHandled(t *testing.T) {
	rec := &blockingRecorder{entered: make(chan struct{}), release: make(chan struct{})}
	addr, _ := serveShed(t, Deps{Recorder: rec, Verifier: NewVerifier([]string{"s"}), Metrics: NewMetrics(nil),
		Logger: zerolog.Nop(), MaxBody: 1 << 20}, 1)
	body := `{"jobId":"held","status":"completed"}`
	a := dialRaw(t, addr)
	fmt.Fprintf(a, "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nX-Nouvel-Signature: %x\r\nContent-Length: %d\r\n\r\n%s",
		Sign([]byte("s"), []byte(body)), len(body), body)
	<-rec.entered
	b := dialRaw(t, addr)
	io.WriteString(b, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	// Give the listener many chances to cut the held delivery, were it to.
	time.Sleep(10 * testGrace)
	close(rec.release)
	resp, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("held delivery: got %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	a.Close()
	resp, err = http.ReadResponse(bufio.NewReader(b), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting connection: got %v, %v; want 200 once the slot freed", resp, err)
	}
	resp.Body.Close()
}
