package forward

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// manualClock is simulated time that moves only when the test says: a
// forward not yet due stays unsent however long the test runs.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []manualTimer
}

type manualTimer struct {
	at time.Time
	ch chan time.Time
}

func newManualClock() *manualClock {
	// Near the wall clock's time, so webhook-timestamp reads as recent.
	return &manualClock{now: time.Now().Truncate(time.Second)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, manualTimer{c.now.Add(d), ch})
	return ch
}

// advance moves time on by d and fires the timers now due.
func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
		} else {
			tm.ch <- c.now
		}
	}
	c.timers = kept
}

// midRand is a jitter source whose every draw is 0.5: each retry waits
// exactly its step.
func midRand() *mrand.Rand { return mrand.New(constSource(1 << 52)) }

type constSource uint64

func (s constSource) Uint64() uint64 { return uint64(s) }

// backend opens a store with forwarding on, on the given clock.
type backend struct {
	name string
	open func(t *testing.T, clk *manualClock) store.Store
}

// backends are the real stores the forwarder runs on: SQLite in a temp
// dir, and Postgres in a fresh schema when NOUVELHOOK_TEST_POSTGRES is set.
func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T, clk *manualClock) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "log.db"),
				sqlite.Options{Now: clk.Now, Forward: true})
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(t *testing.T, clk *manualClock) store.Store {
			return openPostgres(t, freshSchema(t), clk)
		}},
	}
}

// openPostgres opens the log at dbURL with forwarding on, closed when the
// test ends.
func openPostgres(t *testing.T, dbURL string, clk *manualClock) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dbURL, postgres.Options{Now: clk.Now, Forward: true})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freshSchema creates an empty Postgres schema, dropped when the test
// ends, and returns a URL whose connections use it; it skips the test when
// NOUVELHOOK_TEST_POSTGRES is not set.
func freshSchema(t *testing.T) string { return pgtest.Schema(t, "nh_fwd_") }

// eachBackend runs fn on each backend, as a subtest.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// received is one request the app got.
type received struct {
	JobID  string `json:"jobId"`
	Seq    int64  `json:"seq"`
	body   []byte
	header http.Header
	status int // what the app answered
}

// app is the app forwards go to: a real HTTP server that checks every
// request's signatures and answers as the test says.
type app struct {
	t       *testing.T
	clk     *manualClock
	secret  string
	key     []byte
	respond func(w http.ResponseWriter, r *http.Request, n int, got received) int

	mu          sync.Mutex
	got         []received
	inflight    int
	maxInflight int
}

const (
	testSecret  = "nouvel-webhook-secret"
	testVersion = "test"
)

var testKey = []byte("forward key: 32 bytes, or any...")

// ok answers 200 to every request.
func ok(w http.ResponseWriter, r *http.Request, n int, got received) int { return http.StatusOK }

func newApp(t *testing.T, clk *manualClock) *app {
	return &app{t: t, clk: clk, secret: testSecret, key: testKey, respond: ok}
}

func (a *app) setRespond(fn func(w http.ResponseWriter, r *http.Request, n int, got received) int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.respond = fn
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.t.Errorf("app: read body: %v", err)
		return
	}
	var got received
	if err := json.Unmarshal(body, &got); err != nil {
		a.t.Errorf("app: body %q: %v", body, err)
	}
	got.body, got.header = body, r.Header.Clone()
	a.check(r, got)

	a.mu.Lock()
	n := len(a.got) + 1
	a.inflight++
	a.maxInflight = max(a.maxInflight, a.inflight)
	respond := a.respond
	a.got = append(a.got, got)
	a.mu.Unlock()

	status := respond(w, r, n, got)

	a.mu.Lock()
	a.inflight--
	a.got[n-1].status = status
	a.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
}

// check verifies what every forward must carry: both signatures, the
// stable webhook-id, a timestamp of the forwarder's clock, the headers.
func (a *app) check(r *http.Request, got received) {
	t := a.t
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("User-Agent") != "nouvelhook/"+testVersion {
		t.Errorf("app: got %s with Content-Type %q, User-Agent %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
	}
	if !nouvelVerify(a.secret, got.body, r.Header) {
		t.Errorf("app: X-Nouvel-Signature of job %s does not verify", got.JobID)
	}
	if err := standardVerifier(t, a.key).VerifyIgnoringTimestamp(got.body, r.Header); err != nil {
		t.Errorf("app: Standard Webhooks signature of job %s: %v", got.JobID, err)
	}
	if id := r.Header.Get("webhook-id"); id != "job_"+got.JobID {
		t.Errorf("app: webhook-id %q for job %s", id, got.JobID)
	}
	if ts, want := r.Header.Get("webhook-timestamp"), strconv.FormatInt(a.clk.Now().Unix(), 10); ts != want {
		t.Errorf("app: webhook-timestamp %s, want the clock's %s", ts, want)
	}
}

// maxInFlight is the most requests the app has had in flight at once.
func (a *app) maxInFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInflight
}

// requests returns what the app got so far.
func (a *app) requests() []received {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]received(nil), a.got...)
}

// delivered counts the app's 2xx answers per job.
func (a *app) delivered() map[string]int {
	m := map[string]int{}
	for _, r := range a.requests() {
		if r.status >= 200 && r.status <= 299 {
			m[r.JobID]++
		}
	}
	return m
}

// harness is one forwarder on a real store, sending to a real app, on a
// manual clock.
type harness struct {
	t   *testing.T
	clk *manualClock
	st  store.Store
	app *app
	srv *httptest.Server
	reg *prometheus.Registry
	f   *Forwarder
	log *lockedBuffer // the forwarder's log, debug and up

	mu       sync.Mutex
	waits    int // times the loop went to sleep with no wake-up pending
	inflight int // attempts in flight when it last did
}

// newHarness opens the backend and starts the app; change the options
// with tune, then call start.
func newHarness(t *testing.T, b backend) *harness {
	clk := newManualClock()
	h := &harness{t: t, clk: clk, st: b.open(t, clk), reg: prometheus.NewRegistry(), log: &lockedBuffer{}}
	h.app = newApp(t, clk)
	h.srv = httptest.NewServer(h.app)
	t.Cleanup(h.srv.Close)
	return h
}

// options are the forwarder's options in these tests: a 1m, 5m, 30m
// schedule with its jitter fixed at 0, so each retry waits its step.
func (h *harness) options() Options {
	return Options{
		Store: h.st, URL: h.srv.URL + "/hooks/nouvel?token=app-secret", NouvelSecret: testSecret, Key: testKey,
		Schedule: []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute},
		Timeout:  5 * time.Second, Concurrency: 4, Clock: h.clk, Rand: midRand(), Registerer: h.reg,
		Version: testVersion, Logger: zerolog.New(h.log).Level(zerolog.DebugLevel),
	}
}

// lockedBuffer is a log sink the forwarder's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// wantLogs checks that each "level message" was logged n times (a message
// matches by its start), and that no secret was: the app's URL query, the
// Nouvel secret, the forward key.
func (h *harness) wantLogs(want map[string]int) {
	h.t.Helper()
	logs := h.log.String()
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var l struct{ Level, Message string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			h.t.Fatalf("log line %q: %v", line, err)
		}
		for k := range want {
			if level, msg, _ := strings.Cut(k, " "); l.Level == level && strings.HasPrefix(l.Message, msg) {
				got[k]++
			}
		}
	}
	for k, n := range want {
		if got[k] != n {
			h.t.Errorf("logged %q %d times, want %d:\n%s", k, got[k], n, logs)
		}
	}
	for _, secret := range []string{"app-secret", testSecret, string(testKey), base64.StdEncoding.EncodeToString(testKey)} {
		if strings.Contains(logs, secret) {
			h.t.Errorf("the log shows the secret %q:\n%s", secret, logs)
		}
	}
}

// newForwarder makes a forwarder with opts whose loop reports to the
// harness each time it goes to sleep; it is closed before the store.
func (h *harness) newForwarder(opts Options) *Forwarder {
	h.t.Helper()
	f, err := New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	f.onWait = func(n int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.waits++
		h.inflight = n
	}
	h.f = f
	h.t.Cleanup(func() { f.Close() })
	return f
}

// start starts a forwarder with opts and waits for its loop to settle.
func (h *harness) start(opts Options) {
	h.t.Helper()
	f := h.newForwarder(opts)
	mark := h.mark()
	f.Start()
	h.settle(mark)
}

func (h *harness) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waits
}

// settle waits until the loop has gone to sleep since mark with nothing in
// flight and no wake-up pending: from then on nothing happens until the
// clock moves, a job ends, or Kick.
func (h *harness) settle(mark int) { h.settleWith(mark, 0) }

func (h *harness) settleWith(mark, inflight int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("the forwarder to settle with %d in flight", inflight), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.waits > mark && h.inflight == inflight
	})
}

// advance moves the clock on by d and waits for the loop to settle. d is at
// least the backstop, so the loop's own timer fires.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	if d < backstop {
		h.t.Fatalf("advance %s: less than the backstop, the loop may not wake", d)
	}
	mark := h.mark()
	h.clk.advance(d)
	h.settle(mark)
}

// kick calls Kick and waits for the loop to settle.
func (h *harness) kick() {
	h.t.Helper()
	mark := h.mark()
	h.f.Kick()
	h.settle(mark)
}

// waitFor polls cond until it holds, failing the test after 20 s.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive waits for a value on ch, failing the test after 20 s.
func (h *harness) receive(ch <-chan string, what string) string {
	h.t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		h.t.Fatalf("timed out waiting for %s", what)
		return ""
	}
}

// end ends a job as a verified webhook would, which queues its forward.
func (h *harness) end(id string) store.Job {
	h.t.Helper()
	endOn(h.t, h.st, h.clk, id)
	return h.job(id)
}

// endOn ends a job on st as a verified webhook would.
func endOn(t *testing.T, st store.Store, clk *manualClock, id string) {
	t.Helper()
	r := &store.Report{JobID: id, Status: store.StatusCompleted, TotalProjects: 1, CompletedProjects: 1,
		Projects: []store.Project{{ProjectID: id + "-p", Title: "Tom & Jerry <3>", Status: store.StatusCompleted,
			VideoURL: "https://cdn.example/" + id + ".mp4"}}}
	b, _ := json.Marshal(r)
	out, err := st.RecordWebhook(context.Background(), store.WebhookDelivery{Body: b, ReceivedAt: clk.Now(),
		Attempt: 1, JobID: id, Report: r})
	if err != nil || out != store.OutcomeAccepted {
		t.Fatalf("end %s: got %s, %v", id, out, err)
	}
}

func (h *harness) job(id string) store.Job {
	h.t.Helper()
	j, err := h.st.Job(context.Background(), id)
	if err != nil {
		h.t.Fatalf("job %s: %v", id, err)
	}
	if j.Forward == nil {
		h.t.Fatalf("job %s has no forward: is the store opened with forwarding on?", id)
	}
	return j
}

// attempts returns the job's recorded attempts.
func (h *harness) attempts(id string) []store.ForwardAttempt {
	h.t.Helper()
	a, err := h.st.ForwardAttempts(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// wantForward checks a job's forward state, attempt count and last status.
func (h *harness) wantForward(id string, state store.ForwardState, attempts, lastStatus int) store.Forward {
	h.t.Helper()
	fw := *h.job(id).Forward
	if fw.State != state || fw.Attempts != attempts || fw.LastStatus != lastStatus {
		h.t.Fatalf("job %s: forward %s after %d attempts, last status %d (%q); want %s, %d, %d",
			id, fw.State, fw.Attempts, fw.LastStatus, fw.LastError, state, attempts, lastStatus)
	}
	return fw
}

// wantNext checks when a pending forward is due.
func (h *harness) wantNext(id string, want time.Time) {
	h.t.Helper()
	fw := h.job(id).Forward
	if fw.NextAttemptAt == nil || !fw.NextAttemptAt.Equal(want) {
		h.t.Fatalf("job %s: next attempt at %v, want %s", id, fw.NextAttemptAt, want)
	}
}

// wantRequests checks how many requests the app has had.
func (h *harness) wantRequests(n int) []received {
	h.t.Helper()
	got := h.app.requests()
	if len(got) != n {
		h.t.Fatalf("the app got %d requests, want %d: %v", len(got), n, jobIDs(got))
	}
	return got
}

func jobIDs(rs []received) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = fmt.Sprintf("%s(seq %d, %d)", r.JobID, r.Seq, r.status)
	}
	return ids
}

// wantOutcomes checks nouvelhook_forwards_total by outcome, and that the
// attempt histogram has observed every attempt: on a clock that does not
// move during an attempt, each took 0 s, in every bucket.
func (h *harness) wantOutcomes(want map[string]float64) {
	h.t.Helper()
	var b strings.Builder
	b.WriteString("# HELP nouvelhook_forwards_total Attempts to forward a job to the app, by what came of them: delivered, retry, failed (no step left) or paused (410).\n")
	b.WriteString("# TYPE nouvelhook_forwards_total counter\n")
	var n float64
	for _, o := range []string{"delivered", "failed", "paused", "retry"} {
		fmt.Fprintf(&b, "nouvelhook_forwards_total{outcome=%q} %v\n", o, want[o])
		n += want[o]
	}
	b.WriteString("# HELP nouvelhook_forward_attempt_duration_seconds How long attempts to forward a job to the app took, answered or not.\n")
	b.WriteString("# TYPE nouvelhook_forward_attempt_duration_seconds histogram\n")
	for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "15", "30", "60", "+Inf"} {
		fmt.Fprintf(&b, "nouvelhook_forward_attempt_duration_seconds_bucket{le=%q} %v\n", le, n)
	}
	fmt.Fprintf(&b, "nouvelhook_forward_attempt_duration_seconds_sum 0\nnouvelhook_forward_attempt_duration_seconds_count %v\n", n)
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(b.String()),
		"nouvelhook_forwards_total", "nouvelhook_forward_attempt_duration_seconds"); err != nil {
		h.t.Fatal(err)
	}
}

// wantGauges checks the queue's gauges, read from the store at the scrape.
func (h *harness) wantGauges(depth, oldestAge, paused float64) {
	h.t.Helper()
	text := fmt.Sprintf(`# HELP nouvelhook_forward_queue_depth Forwards not yet delivered nor failed: pending and paused.
# TYPE nouvelhook_forward_queue_depth gauge
nouvelhook_forward_queue_depth %v
# HELP nouvelhook_forward_oldest_pending_age_seconds How long the longest-waiting pending or paused forward has been queued; 0 when none waits.
# TYPE nouvelhook_forward_oldest_pending_age_seconds gauge
nouvelhook_forward_oldest_pending_age_seconds %v
# HELP nouvelhook_forwarding_paused 1 while forwarding is paused after the app answered 410 Gone, else 0.
# TYPE nouvelhook_forwarding_paused gauge
nouvelhook_forwarding_paused %v
`, depth, oldestAge, paused)
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(text), "nouvelhook_forward_queue_depth",
		"nouvelhook_forward_oldest_pending_age_seconds", "nouvelhook_forwarding_paused"); err != nil {
		h.t.Fatal(err)
	}
}

// connCount counts a server's connections.
type connCount struct {
	mu           sync.Mutex
	news, closed int
}

func (c *connCount) track(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.news++
	case http.StateClosed, http.StateHijacked:
		c.closed++
	}
}

// opened counts the connections accepted so far.
func (c *connCount) opened() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.news
}

// open counts the connections accepted and not yet closed.
func (c *connCount) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.news - c.closed
}

// countedApp serves the harness's app on a second server that counts its
// connections.
func (h *harness) countedApp() (*httptest.Server, *connCount) {
	c := &connCount{}
	srv := httptest.NewUnstartedServer(h.app)
	srv.Config.ConnState = c.track
	srv.Start()
	h.t.Cleanup(srv.Close)
	return srv, c
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serveAt starts h on addr.
func serveAt(t *testing.T, addr string, h http.Handler) *httptest.Server {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
