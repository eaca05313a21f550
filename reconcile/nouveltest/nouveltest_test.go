package nouveltest_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

const (
	testKey    = "nvl_test_key"
	testSecret = "whsec_test"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hook is a loopback webhook receiver that keeps what it got.
type hook struct {
	srv *httptest.Server

	mu       sync.Mutex
	bodies   [][]byte
	headers  []http.Header
	statuses []int // answered in turn; 200 once used up
}

func newHook(t *testing.T, statuses ...int) *hook {
	t.Helper()
	h := &hook{statuses: statuses}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		h.headers = append(h.headers, r.Header.Clone())
		status := http.StatusOK
		if len(h.statuses) > 0 {
			status, h.statuses = h.statuses[0], h.statuses[1:]
		}
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() ([][]byte, []http.Header) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...), append([]http.Header(nil), h.headers...)
}

// route sends every public webhook URL to h.
func (h *hook) route(string) string { return h.srv.URL + "/webhooks/nouvel" }

func start(t *testing.T, opts nouveltest.Options) *nouveltest.Server {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = testKey
	}
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = testSecret
	}
	s := nouveltest.New(opts)
	t.Cleanup(s.Close)
	return s
}

// call sends one request with key as bearer and returns the answer and its body.
func call(t *testing.T, s *nouveltest.Server, method, path, key string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

type jobAnswer struct {
	JobID             string       `json:"jobId"`
	Status            store.Status `json:"status"`
	OverallProgress   float64      `json:"overallProgress"`
	Stage             string       `json:"stage"`
	TotalProjects     int          `json:"totalProjects"`
	CompletedProjects int          `json:"completedProjects"`
	FailedProjects    int          `json:"failedProjects"`
	Projects          []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"projects"`
	CompletedDetails []struct {
		ProjectID      string `json:"projectId"`
		FinalOutputURL string `json:"finalOutputUrl"`
	} `json:"completedDetails"`
}

func poll(t *testing.T, s *nouveltest.Server, id string) jobAnswer {
	t.Helper()
	resp, body := call(t, s, http.MethodGet, "/api/v1/jobs/"+id, testKey, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET job %s: status %d, body %s", id, resp.StatusCode, body)
	}
	var a jobAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("GET job %s: %v in %s", id, err, body)
	}
	return a
}

func TestJobAdvancesOnlyWhenPolled(t *testing.T) {
	s := start(t, nouveltest.Options{})
	const id = "clx8k9v2t0001qz8x7r4e5w6m"
	s.AddJob(nouveltest.JobSpec{ID: id, Outcome: store.StatusPartial, Polls: 3, Projects: 3})

	time.Sleep(10 * time.Millisecond) // time alone must not move it
	if v, _ := s.Job(id); v.Status != store.StatusPending || v.Polls != 0 {
		t.Fatalf("before any poll: status %q after %d polls, want pending after 0", v.Status, v.Polls)
	}
	steps := []struct {
		status   store.Status
		progress float64
		details  int
	}{
		{store.StatusRunning, 33.3, 0},
		{store.StatusRunning, 66.7, 0},
		{store.StatusPartial, 100, 2},
		{store.StatusPartial, 100, 2},
	}
	for i, want := range steps {
		a := poll(t, s, id)
		if a.Status != want.status || a.OverallProgress != want.progress || len(a.CompletedDetails) != want.details {
			t.Errorf("poll %d: got %s %.1f%% with %d details, want %s %.1f%% with %d",
				i+1, a.Status, a.OverallProgress, len(a.CompletedDetails), want.status, want.progress, want.details)
		}
		if a.Stage == "" || a.TotalProjects != 3 || len(a.Projects) != 3 {
			t.Errorf("poll %d: stage %q, %d total, %d projects", i+1, a.Stage, a.TotalProjects, len(a.Projects))
		}
	}
	a := poll(t, s, id)
	if a.CompletedProjects != 2 || a.FailedProjects != 1 {
		t.Errorf("partial of 3: got %d completed, %d failed, want 2 and 1", a.CompletedProjects, a.FailedProjects)
	}
	if got, want := a.CompletedDetails[0].FinalOutputURL, "https://cdn.nouvel.example/videos/"+id+"-p1.mp4"; got != want {
		t.Errorf("video URL: got %q, want %q", got, want)
	}
	if got := s.Polls(id); got != 5 {
		t.Errorf("Polls: got %d, want 5", got)
	}
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		outcome           store.Status
		projects          int
		completed, failed int
		videos            int
	}{
		{store.StatusCompleted, 2, 2, 0, 2},
		{store.StatusPartial, 1, 1, 1, 1}, // raised to two projects
		{store.StatusFailed, 3, 0, 3, 0},
		{store.StatusCancelled, 2, 0, 0, 0},
	}
	s := start(t, nouveltest.Options{})
	for _, tt := range tests {
		id := s.AddJob(nouveltest.JobSpec{Outcome: tt.outcome, Projects: tt.projects})
		a := poll(t, s, id)
		v, _ := s.Job(id)
		if a.Status != tt.outcome || a.CompletedProjects != tt.completed || a.FailedProjects != tt.failed ||
			len(a.CompletedDetails) != tt.videos || v.CompletedProjects != tt.completed {
			t.Errorf("%s: got %s, %d completed, %d failed, %d details; want %d, %d, %d",
				tt.outcome, a.Status, a.CompletedProjects, a.FailedProjects, len(a.CompletedDetails),
				tt.completed, tt.failed, tt.videos)
		}
	}
}

func TestWebhookSentOnTerminalPoll(t *testing.T) {
	h := newHook(t)
	s := start(t, nouveltest.Options{RouteWebhook: h.route})
	id := s.AddJob(nouveltest.JobSpec{Polls: 2, Projects: 2, WebhookURL: "https://hooks.example.com/webhooks/nouvel"})

	poll(t, s, id)
	if bodies, _ := h.got(); len(bodies) != 0 {
		t.Fatalf("webhook sent before the job ended: %s", bodies[0])
	}
	poll(t, s, id)
	bodies, headers := h.got() // no waiting: it is sent before the poll is answered
	if len(bodies) != 1 {
		t.Fatalf("got %d webhooks after the terminal poll, want 1", len(bodies))
	}
	body, hdr := bodies[0], headers[0]
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write(body)
	if got, want := hdr.Get("X-Nouvel-Signature"), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("signature: got %q, want %q", got, want)
	}
	if got := hdr.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type: got %q", got)
	}
	if got := hdr.Get("X-Nouvel-Attempt"); got != "" {
		t.Errorf("docs-v1 webhook carries X-Nouvel-Attempt %q", got)
	}

	var wb struct {
		Event, JobID, Status string
		TotalProjects        int
		CompletedProjects    int
		Projects             []store.Project
	}
	if err := json.Unmarshal(body, &wb); err != nil {
		t.Fatal(err)
	}
	v, _ := s.Job(id)
	if wb.Event != "job.completed" || wb.JobID != id || wb.Status != string(store.StatusCompleted) || wb.CompletedProjects != 2 {
		t.Errorf("webhook body: got %s", body)
	}
	if !reflect.DeepEqual(wb.Projects, v.Projects) {
		t.Errorf("webhook projects: got %+v, want %+v", wb.Projects, v.Projects)
	}
	if !v.WebhookDelivered || v.WebhookAttempts != 1 || !reflect.DeepEqual(s.WebhooksSent(), []string{id}) {
		t.Errorf("view after delivery: %+v, sent %v", v, s.WebhooksSent())
	}

	poll(t, s, id)
	if bodies, _ := h.got(); len(bodies) != 1 {
		t.Errorf("a later poll sent the webhook again: %d in all", len(bodies))
	}
}

func TestNoWebhookURLSendsNothing(t *testing.T) {
	h := newHook(t)
	s := start(t, nouveltest.Options{RouteWebhook: h.route})
	id := s.AddJob(nouveltest.JobSpec{})
	poll(t, s, id)
	if bodies, _ := h.got(); len(bodies) != 0 || len(s.Deliveries()) != 0 {
		t.Errorf("a job without webhookUrl sent %d webhooks", len(bodies))
	}
}

func TestDropRate(t *testing.T) {
	h := newHook(t)
	s := start(t, nouveltest.Options{DropRate: 1, RouteWebhook: h.route})
	var ids []string
	for range 5 {
		id := s.AddJob(nouveltest.JobSpec{WebhookURL: "https://hooks.example.com/x"})
		poll(t, s, id)
		ids = append(ids, id)
	}
	if bodies, _ := h.got(); len(bodies) != 0 {
		t.Errorf("DropRate 1 sent %d webhooks", len(bodies))
	}
	if got := s.WebhooksDropped(); !reflect.DeepEqual(got, ids) {
		t.Errorf("WebhooksDropped: got %v, want %v", got, ids)
	}

	// The same seed drops the same jobs.
	dropped := func() []string {
		s := start(t, nouveltest.Options{DropRate: 0.5, Seed: 7, RouteWebhook: h.route})
		for i := range 20 {
			id := s.AddJob(nouveltest.JobSpec{ID: "job-" + strconv.Itoa(i), WebhookURL: "https://hooks.example.com/x"})
			poll(t, s, id)
		}
		return s.WebhooksDropped()
	}
	first, second := dropped(), dropped()
	if !reflect.DeepEqual(first, second) || len(first) == 0 || len(first) == 20 {
		t.Errorf("seeded drops: got %v then %v", first, second)
	}
}

func TestAttemptsRetryWithHeader(t *testing.T) {
	h := newHook(t, http.StatusInternalServerError, http.StatusBadGateway)
	s := start(t, nouveltest.Options{
		RouteWebhook: h.route, Attempts: true,
		RetryDelays: []time.Duration{time.Millisecond, time.Millisecond},
	})
	id := s.AddJob(nouveltest.JobSpec{WebhookURL: "https://hooks.example.com/x"})
	poll(t, s, id)
	waitFor(t, func() bool { return len(s.Deliveries()) == 3 })

	bodies, headers := h.got()
	if len(bodies) != 3 {
		t.Fatalf("got %d attempts, want 3", len(bodies))
	}
	for i := range bodies {
		if got, want := headers[i].Get("X-Nouvel-Attempt"), strconv.Itoa(i+1); got != want {
			t.Errorf("attempt %d: X-Nouvel-Attempt %q, want %q", i+1, got, want)
		}
		if !bytes.Equal(bodies[i], bodies[0]) || headers[i].Get("X-Nouvel-Signature") != headers[0].Get("X-Nouvel-Signature") {
			t.Errorf("attempt %d: bytes or signature differ from attempt 1", i+1)
		}
	}
	if v, _ := s.Job(id); !v.WebhookDelivered || v.WebhookAttempts != 3 {
		t.Errorf("view: delivered %v after %d attempts, want true after 3", v.WebhookDelivered, v.WebhookAttempts)
	}
}

func TestCloseEndsPendingRetries(t *testing.T) {
	h := newHook(t, 500, 500, 500)
	s := nouveltest.New(nouveltest.Options{
		APIKey: testKey, RouteWebhook: h.route, Attempts: true, RetryDelays: []time.Duration{time.Hour, time.Hour},
	})
	poll(t, s, s.AddJob(nouveltest.JobSpec{WebhookURL: "https://hooks.example.com/x"}))
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for an hour-long retry delay")
	}
	if got := len(s.Deliveries()); got != 1 {
		t.Errorf("got %d attempts, want 1", got)
	}
}

func TestWebhookNeverLeavesLoopback(t *testing.T) {
	s := start(t, nouveltest.Options{}) // no RouteWebhook: the public URL would be dialled
	id := s.AddJob(nouveltest.JobSpec{WebhookURL: "https://hooks.example.com/x"})
	poll(t, s, id)
	d := s.Deliveries()
	if len(d) != 1 || d[0].Status != 0 || !strings.Contains(d[0].Err, "not a loopback address") {
		t.Errorf("deliveries: got %+v, want one refused attempt", d)
	}
}

func TestRateLimit(t *testing.T) {
	clk := newClock()
	s := start(t, nouveltest.Options{Now: clk.Now})
	id := s.AddJob(nouveltest.JobSpec{Polls: 1000})
	t0 := clk.Now()
	path := "/api/v1/jobs/" + id

	for i := range 60 {
		resp, _ := call(t, s, http.MethodGet, path, testKey, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(59-i) {
			t.Fatalf("request %d: status %d, remaining %q", i+1, resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
		}
		clk.Add(100 * time.Millisecond) // 60 requests in 6 s
	}
	clk.Add(4 * time.Second) // t0+10s
	for range 3 {            // refused requests do not count
		resp, body := call(t, s, http.MethodGet, path, testKey, nil)
		var rl struct {
			Error      string `json:"error"`
			Reason     string `json:"reason"`
			RetryAfter int    `json:"retryAfter"`
		}
		_ = json.Unmarshal(body, &rl)
		h := resp.Header
		if resp.StatusCode != http.StatusTooManyRequests || h.Get("Retry-After") != "50" || rl.RetryAfter != 50 ||
			rl.Error != "Rate limit exceeded" || rl.Reason == "" {
			t.Fatalf("61st request: status %d, Retry-After %q, body %s", resp.StatusCode, h.Get("Retry-After"), body)
		}
		if h.Get("X-RateLimit-Limit") != "60" || h.Get("X-RateLimit-Remaining") != "0" ||
			h.Get("X-RateLimit-Reset") != strconv.FormatInt(t0.Add(time.Minute).Unix(), 10) {
			t.Errorf("429 headers: %v", h)
		}
	}
	if got := s.Polls(id); got != 60 {
		t.Errorf("refused requests advanced the job: %d polls, want 60", got)
	}

	clk.Add(50 * time.Second) // t0+60s: the first request leaves the window
	resp, _ := call(t, s, http.MethodGet, path, testKey, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("after the oldest left: status %d, remaining %q, want 200 and 0",
			resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
	clk.Add(time.Minute)
	resp, _ = call(t, s, http.MethodGet, path, testKey, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != "59" {
		t.Errorf("a minute later: status %d, remaining %q, want 200 and 59",
			resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
}

func TestEveryAnswerCarriesRateHeaders(t *testing.T) {
	s := start(t, nouveltest.Options{RateLimit: 5})
	for _, tc := range []struct{ path, key string }{
		{"/api/v1/jobs/nope", testKey}, // 404
		{"/api/v1/jobs/nope", ""},      // 401
		{"/elsewhere", testKey},        // 404
	} {
		resp, _ := call(t, s, http.MethodGet, tc.path, tc.key, nil)
		if resp.Header.Get("X-RateLimit-Limit") != "5" || resp.Header.Get("X-RateLimit-Reset") == "" {
			t.Errorf("%s (status %d): rate headers missing: %v", tc.path, resp.StatusCode, resp.Header)
		}
	}
}

func TestGenerateValidation(t *testing.T) {
	s := start(t, nouveltest.Options{})
	good := []string{"https://shop.example/p/1"}
	tests := []struct {
		name   string
		body   map[string]any
		status int
		msg    string
	}{
		{"no urls", map[string]any{"urls": []string{}}, 400, "urls"},
		{"four urls", map[string]any{"urls": []string{"https://a.example", "https://b.example", "https://c.example", "https://d.example"}}, 400, "urls"},
		{"variantCount 4", map[string]any{"urls": good, "variantCount": 4}, 400, "variantCount"},
		{"aspect", map[string]any{"urls": good, "aspectRatio": "4:3"}, 400, "aspectRatio"},
		{"http webhook", map[string]any{"urls": good, "webhookUrl": "http://hooks.example.com/x"}, 400, "https"},
		{"localhost", map[string]any{"urls": good, "webhookUrl": "https://localhost:8080/x"}, 400, "localhost"},
		{"127.0.0.1", map[string]any{"urls": good, "webhookUrl": "https://127.0.0.1/x"}, 400, "localhost"},
		{"::1", map[string]any{"urls": good, "webhookUrl": "https://[::1]/x"}, 400, "localhost"},
		{"0.0.0.0", map[string]any{"urls": good, "webhookUrl": "https://0.0.0.0/x"}, 400, "localhost"},
		{"10.x", map[string]any{"urls": good, "webhookUrl": "https://10.1.2.3/x"}, 400, "private"},
		{"172.20.x", map[string]any{"urls": good, "webhookUrl": "https://172.20.0.5/x"}, 400, "private"},
		{"192.168.x", map[string]any{"urls": good, "webhookUrl": "https://192.168.1.10/x"}, 400, "private"},
		{"bad product url", map[string]any{"urls": []string{"ftp://shop.example/p"}}, 422, "urls[0]"},
		{"172.32.x is public", map[string]any{"urls": good, "webhookUrl": "https://172.32.0.5/x"}, 200, ""},
		{"https public host", map[string]any{"urls": good, "variantCount": 2, "webhookUrl": "https://hooks.example.com/webhooks/nouvel"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.Requests())
			resp, body := call(t, s, http.MethodPost, "/api/v1/generate", testKey, tt.body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.msg) {
				t.Errorf("got %d %s, want %d naming %q", resp.StatusCode, body, tt.status, tt.msg)
			}
			if got := s.Requests()[before].Status; got != tt.status {
				t.Errorf("request log: got status %d, want %d", got, tt.status)
			}
		})
	}
}

func TestGenerateMakesJob(t *testing.T) {
	h := newHook(t)
	s := start(t, nouveltest.Options{GeneratePolls: 2, GenerateOutcome: store.StatusCompleted, RouteWebhook: h.route})
	resp, body := call(t, s, http.MethodPost, "/api/v1/generate", testKey, map[string]any{
		"urls": []string{"https://shop.example/a", "https://shop.example/b"}, "variantCount": 3,
		"aspectRatio": "1:1", "webhookUrl": "https://hooks.example.com/x",
	})
	var g struct {
		JobID         string `json:"jobId"`
		TotalProjects int    `json:"totalProjects"`
		Status        string `json:"status"`
	}
	if err := json.Unmarshal(body, &g); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("generate: %d %s", resp.StatusCode, body)
	}
	if !store.ValidJobID(g.JobID) || g.TotalProjects != 6 || g.Status != string(store.StatusRunning) {
		t.Fatalf("generate answer: %+v", g)
	}
	if a := poll(t, s, g.JobID); a.Status != store.StatusRunning {
		t.Errorf("first poll: %s, want running", a.Status)
	}
	if a := poll(t, s, g.JobID); a.Status != store.StatusCompleted || len(a.CompletedDetails) != 6 {
		t.Errorf("second poll: %s with %d details, want completed with 6", a.Status, len(a.CompletedDetails))
	}
	if bodies, _ := h.got(); len(bodies) != 1 {
		t.Errorf("got %d webhooks, want 1", len(bodies))
	}
}

func TestFaults(t *testing.T) {
	s := start(t, nouveltest.Options{})
	id := s.AddJob(nouveltest.JobSpec{Polls: 10})
	other := s.AddJob(nouveltest.JobSpec{Polls: 10})
	path := "/api/v1/jobs/" + id

	s.InjectFault(nouveltest.Fault{Status: http.StatusServiceUnavailable, Count: 2, JobID: id})
	poll(t, s, other) // another job's poll is not faulted
	for i := range 2 {
		if resp, _ := call(t, s, http.MethodGet, path, testKey, nil); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("faulted request %d: status %d, want 503", i+1, resp.StatusCode)
		}
	}
	if got := s.Polls(id); got != 0 {
		t.Errorf("faulted requests advanced the job: %d polls", got)
	}
	poll(t, s, id)

	s.InjectFault(nouveltest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 7 * time.Second})
	before := s.Requests()
	resp, _ := call(t, s, http.MethodGet, path, testKey, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("injected 429: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got, want := resp.Header.Get("X-RateLimit-Remaining"), strconv.Itoa(60-len(before)); got != want {
		t.Errorf("injected 429 counted toward the window: remaining %s, want %s", got, want)
	}

	s.InjectFault(nouveltest.Fault{Delay: time.Minute, JobID: id})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed request: got %v, want a deadline error", err)
	}
	waitFor(t, func() bool { r := s.Requests(); return len(r) == len(before)+2 })
	if got := s.Requests()[len(before)+1].Status; got != 0 {
		t.Errorf("abandoned request logged with status %d, want 0", got)
	}
	if got := s.Polls(id); got != 1 {
		t.Errorf("abandoned request advanced the job: %d polls, want 1", got)
	}
}

func TestAuth(t *testing.T) {
	s := start(t, nouveltest.Options{})
	id := s.AddJob(nouveltest.JobSpec{Polls: 10})
	path := "/api/v1/jobs/" + id
	tests := []struct {
		name       string
		authStatus int
		key        string
		status     int
		body       string
	}{
		{"no key", 0, "", 401, `{"error":"Unauthorized"}`},
		{"wrong key", 0, "nvl_wrong", 401, `{"error":"Unauthorized"}`},
		{"good key", 0, testKey, 200, ""},
		{"revoked", 401, testKey, 401, `{"error":"Unauthorized"}`},
		{"no permission", 403, testKey, 403, `{"error":"Forbidden"}`},
		{"restored", 0, testKey, 200, ""},
	}
	for _, tt := range tests {
		s.SetAuthStatus(tt.authStatus)
		resp, body := call(t, s, http.MethodGet, path, tt.key, nil)
		if resp.StatusCode != tt.status || (tt.body != "" && strings.TrimSpace(string(body)) != tt.body) {
			t.Errorf("%s: got %d %s, want %d %s", tt.name, resp.StatusCode, body, tt.status, tt.body)
		}
	}
	if got := s.Polls(id); got != 2 {
		t.Errorf("refused requests advanced the job: %d polls, want 2", got)
	}
	resp, body := call(t, s, http.MethodGet, "/api/v1/jobs/unknown-job", testKey, nil)
	if resp.StatusCode != http.StatusNotFound || strings.TrimSpace(string(body)) != `{"error":"Job not found"}` {
		t.Errorf("unknown job: got %d %s", resp.StatusCode, body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
