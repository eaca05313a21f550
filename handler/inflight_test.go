package handler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

// heldRecorder commits to the real store once the test lets it.
type heldRecorder struct {
	st      store.Store
	release chan struct{}
}

func (r heldRecorder) RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	<-r.release
	return r.st.RecordWebhook(ctx, d)
}

// TestWebhooksInFlight: the count is the webhook requests being handled,
// and falls back to 0 once they are answered.
func TestWebhooksInFlight(t *testing.T) {
	st := openStore(t)
	rec := heldRecorder{st: st, release: make(chan struct{})}
	m := NewMetrics(nil)
	e := NewPublic(Deps{
		Store: st, Recorder: rec, Verifier: NewVerifier([]string{"s"}), Metrics: m, Logger: zerolog.Nop(),
		WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20,
	})
	url := "http://" + serveOn(t, e) + "/webhooks/nouvel"
	if got := m.WebhooksInFlight(); got != 0 {
		t.Fatalf("before any request: %d in flight, want 0", got)
	}
	const n = 3
	errc := make(chan error, n)
	for i := range n {
		go func() {
			body := []byte(fmt.Sprintf(`{"jobId":"held-%d","status":"completed","totalProjects":1,"completedProjects":1,"failedProjects":0}`, i))
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set(SignatureHeader, fmt.Sprintf("%x", Sign([]byte("s"), body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errc <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("delivery %d: got %d, want 200", i, resp.StatusCode)
			}
			errc <- err
		}()
	}
	waitCount := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for m.WebhooksInFlight() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d webhooks in flight, want %d", m.WebhooksInFlight(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitCount(n)
	close(rec.release)
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	waitCount(0)
}
