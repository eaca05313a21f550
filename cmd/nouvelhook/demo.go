package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// The demo's settings: a stand-in Nouvel that drops some webhooks, the
// service polling it as fast as the configuration allows, and forwarding to
// a stand-in app on a short schedule, so its retries show within the demo.
const (
	demoJobs     = 6
	demoDropRate = 0.4
	demoSecret   = "demo-webhook-secret"
	demoKey      = "nvl_demo_key"
	demoPublic   = "https://nouvelhook.demo.example"
	demoTimeout  = 2 * time.Minute
	demoAppPath  = "/webhooks/nouvel"
)

// demoSchedule is the demo's NOUVELHOOK_FORWARD_SCHEDULE: the first retry
// comes about a second after the app's 500.
var demoSchedule = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}

// runDemo runs the whole product against a built-in stand-in for Nouvel:
// it submits a few jobs through the admin API, the stand-in drops some of
// their webhooks, and each job is printed as it ends, with what caught it.
// Each ended job is forwarded to a stand-in app that fails the first
// attempt, and each attempt and retry is printed as the app sees it.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "demo\n\nRuns nouvelhook on a temporary database against a built-in stand-in for Nouvel\n"+
		"that drops some webhooks, submits a few jobs, and shows each one ending and\nwhether the webhook or the poller caught it, then forwarded to a local app\n"+
		"that fails each first attempt, and retried. Needs no account and no flags.", stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "nouvelhook-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	out := &lockedWriter{w: stdout} // the app prints as the feed does
	app, err := startDemoApp(demoSecret, out)
	if err != nil {
		return err
	}
	defer app.Close()

	var public atomic.Pointer[string] // set once the service listens, read by the stand-in
	nouvel := nouveltest.New(nouveltest.Options{
		APIKey: demoKey, WebhookSecret: demoSecret, DropRate: demoDropRate, Seed: time.Now().UnixNano(),
		RouteWebhook: func(string) string { return *public.Load() },
	})
	defer nouvel.Close()

	cfg := config.Default()
	cfg.WebhookSecrets, cfg.APIKey, cfg.APIBaseURL = []string{demoSecret}, demoKey, nouvel.URL()
	cfg.Listen, cfg.AdminListen, cfg.PublicURL = "127.0.0.1:0", "127.0.0.1:0", demoPublic
	cfg.DBPath = dir + "/nouvelhook.db"
	cfg.PollBudget, cfg.PollInterval, cfg.MissedGrace = 60, time.Second, 3*time.Second
	cfg.ForwardURL, cfg.ForwardSchedule, cfg.ForwardTimeout = app.URL, demoSchedule, 5*time.Second
	if err := cfg.Validate(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	admin := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, zerolog.Nop(), func(pub, adm string) {
			hook := pub + cfg.WebhookPath
			public.Store(&hook)
			admin <- adm
		})
	}()
	var adminURL string
	select {
	case adminURL = <-admin:
	case err := <-done:
		return fmt.Errorf("demo service did not start: %w", err)
	}

	fmt.Fprintf(out, "nouvelhook demo: a stand-in Nouvel that drops %d%% of webhooks, and nouvelhook in front of it.\n", int(demoDropRate*100))
	fmt.Fprintf(out, "  webhooks: %s    admin API: %s\n", *public.Load(), adminURL)
	fmt.Fprintf(out, "  forwards to your app: %s (a stand-in that fails each job's first attempt with 500)\n\n", app.URL)
	d := &demo{admin: adminURL, nouvel: nouvel, app: app, out: out}
	err = d.run(ctx)
	cancel()
	if serr := <-done; err == nil && serr != nil && ctx.Err() == nil {
		err = serr
	}
	return err
}

type demo struct {
	admin  string
	nouvel *nouveltest.Server
	app    *demoApp
	out    io.Writer
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintf(d.out, "Submitting %d jobs through POST /v1/generate:\n", demoJobs)
	for i := range demoJobs {
		body := fmt.Sprintf(`{"urls":["https://shop.example/products/item-%d"],"variantCount":%d,"aspectRatio":"9:16"}`, i+1, 1+i%3)
		var ans struct {
			JobID, Mode string
		}
		if err := d.post(ctx, "/v1/generate", body, &ans); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  %s  (%s mode)\n", ans.JobID, ans.Mode)
	}
	fmt.Fprint(d.out, "\nJobs move forward only while they are polled; watching the change feed (GET /v1/events):\n\n")
	const row = "  %-8s  %-36s  %-9s  %-6s  %s\n"
	fmt.Fprintf(d.out, row, "ENDED", "JOB", "STATUS", "VIDEOS", "CAUGHT BY")
	byWebhook, byPoller, after := 0, 0, int64(0)
	for byWebhook+byPoller < demoJobs {
		var feed struct {
			Events []store.Job `json:"events"`
			Last   int64       `json:"last"`
		}
		if err := d.get(ctx, fmt.Sprintf("/v1/events?after=%d&wait=30s", after), &feed); err != nil {
			return err
		}
		for _, j := range feed.Events {
			caught := "webhook"
			if j.Source == store.SourcePoll {
				caught, byPoller = "poller (webhook dropped)", byPoller+1
			} else {
				byWebhook++
			}
			fmt.Fprintf(d.out, row, j.TerminalAt.Local().Format("15:04:05"), j.JobID, j.Status,
				fmt.Sprintf("%d/%d", j.CompletedProjects, j.TotalProjects), caught)
		}
		after = feed.Last
	}
	fmt.Fprintf(d.out, "\nAll %d jobs ended once each: %d by webhook, %d by the poller. Nothing lost.\n",
		demoJobs, byWebhook, byPoller)
	select {
	case <-d.app.allAccepted:
	case <-ctx.Done():
		return fmt.Errorf("demo did not finish within %s", demoTimeout)
	}
	// The app's 200 comes before nouvelhook records it: wait for the queue.
	var delivered int
	for delivered < demoJobs {
		var stats struct {
			Forwards *store.ForwardStats `json:"forwards"`
		}
		if err := d.get(ctx, "/v1/stats", &stats); err != nil {
			return err
		}
		if stats.Forwards != nil {
			delivered = stats.Forwards.ByState[store.ForwardDelivered]
		}
		if delivered < demoJobs {
			select {
			case <-ctx.Done():
				return fmt.Errorf("demo did not finish within %s", demoTimeout)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	fmt.Fprintf(d.out, "\nAll %d jobs forwarded to the app: %d attempts failed and were retried, %d accepted (GET /v1/stats: %d delivered).\n",
		demoJobs, d.app.failed(), demoJobs, delivered)
	fmt.Fprintln(d.out, "In production, point webhookUrl at nouvelhook serve, set NOUVEL_API_KEY so the poller runs,")
	fmt.Fprintln(d.out, "and NOUVELHOOK_FORWARD_URL to your app's webhook handler.")
	return nil
}

func (d *demo) get(ctx context.Context, path string, v any) error {
	return d.do(ctx, http.MethodGet, path, "", v)
}

func (d *demo) post(ctx context.Context, path, body string, v any) error {
	return d.do(ctx, http.MethodPost, path, body, v)
}

func (d *demo) do(ctx context.Context, method, path, body string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.admin+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("demo did not finish within %s", demoTimeout)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// lockedWriter lets the feed and the stand-in app print whole lines to one
// writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// demoApp stands in for the user's app: a loopback HTTP server that checks
// each forward's X-Nouvel-Signature as a handler written from Nouvel's docs
// would, fails every job's first attempt with 500, accepts the next, and
// prints each attempt.
type demoApp struct {
	URL string
	srv *http.Server
	out io.Writer
	key []byte

	mu          sync.Mutex
	tries       map[string]int
	accepted    map[string]bool
	fails       int
	allAccepted chan struct{} // closed once demoJobs jobs were accepted
}

func startDemoApp(secret string, out io.Writer) (*demoApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo app: %w", err)
	}
	a := &demoApp{
		URL: "http://" + ln.Addr().String() + demoAppPath, out: out, key: []byte(secret),
		tries: map[string]int{}, accepted: map[string]bool{}, allAccepted: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+demoAppPath, a.receive)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(out, "demo app: %v\n", err)
		}
	}()
	return a, nil
}

func (a *demoApp) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	m := hmac.New(sha256.New, a.key)
	m.Write(body)
	var ev struct {
		Event  string `json:"event"`
		JobID  string `json:"jobId"`
		Status string `json:"status"`
	}
	if !hmac.Equal([]byte(r.Header.Get("X-Nouvel-Signature")), []byte(hex.EncodeToString(m.Sum(nil)))) ||
		json.Unmarshal(body, &ev) != nil {
		fmt.Fprintln(a.out, "  app:  a forward with a bad signature: 401")
		http.Error(w, `{"error":"invalid signature"}`, http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	a.tries[ev.JobID]++
	try := a.tries[ev.JobID]
	if try == 1 {
		a.fails++
	} else if !a.accepted[ev.JobID] {
		a.accepted[ev.JobID] = true
		if len(a.accepted) == demoJobs {
			close(a.allAccepted)
		}
	}
	a.mu.Unlock()
	at := time.Now().Local().Format("15:04:05")
	if try == 1 {
		fmt.Fprintf(a.out, "  %-8s  %-36s  → app: %s (%s), attempt %d: 500, failing on purpose; nouvelhook retries\n", at, ev.JobID, ev.Event, ev.Status, try)
		http.Error(w, `{"error":"not ready"}`, http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(a.out, "  %-8s  %-36s  → app: %s (%s), attempt %d: 200, signature checked, accepted\n", at, ev.JobID, ev.Event, ev.Status, try)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"received":true}`)
}

// failed counts the attempts the app failed on purpose.
func (a *demoApp) failed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fails
}

// Close stops the app at once.
func (a *demoApp) Close() error { return a.srv.Close() }
