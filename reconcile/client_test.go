package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

const apiKey = "nvl_live_s3cr3t_key"

var sentinels = []error{
	reconcile.ErrInvalid, reconcile.ErrUnauthorized, reconcile.ErrQuota, reconcile.ErrForbidden,
	reconcile.ErrNotFound, reconcile.ErrRateLimited, reconcile.ErrServer, reconcile.ErrTransport,
}

// answering starts a fake Nouvel that answers every request with status,
// headers and body.
func answering(t *testing.T, status int, header map[string]string, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestErrorStatusesMapToSentinels(t *testing.T) {
	tests := []struct {
		status     int
		header     map[string]string
		body       string
		want       error
		msg        string
		retryAfter time.Duration
		retryable  bool
	}{
		{400, nil, `{"error":"Invalid request","reason":"urls must hold 1 to 3 product URLs"}`,
			reconcile.ErrInvalid, "Invalid request: urls must hold 1 to 3 product URLs", 0, false},
		{401, nil, `{"error":"Invalid API key ` + apiKey + `"}`,
			reconcile.ErrUnauthorized, "Invalid API key [redacted]", 0, false},
		{402, nil, `{"error":"Insufficient credits"}`, reconcile.ErrQuota, "Insufficient credits", 0, false},
		{403, nil, `{"error":"Missing permission projects:read"}`, reconcile.ErrForbidden, "Missing permission projects:read", 0, false},
		{404, nil, `{"error":"Job not found"}`, reconcile.ErrNotFound, "Job not found", 0, false},
		{422, nil, `{"error":"Could not read product page"}`, reconcile.ErrInvalid, "Could not read product page", 0, false},
		{429, map[string]string{"Retry-After": "17"}, `{"error":"Rate limit exceeded","reason":"60/min","retryAfter":30}`,
			reconcile.ErrRateLimited, "Rate limit exceeded: 60/min", 17 * time.Second, true},
		{429, nil, `{"error":"Rate limit exceeded","retryAfter":30}`,
			reconcile.ErrRateLimited, "Rate limit exceeded", 30 * time.Second, true},
		{500, nil, `{"error":"Internal error"}`, reconcile.ErrServer, "Internal error", 0, true},
		{503, nil, `<html>bad gateway</html>`, reconcile.ErrServer, "Service Unavailable", 0, true},
		{302, map[string]string{"Location": "https://elsewhere.example/"}, ``, reconcile.ErrServer, "Found", 0, true},
		{418, nil, ``, reconcile.ErrServer, "I'm a teapot", 0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, " ", tt.msg), func(t *testing.T) {
			srv := answering(t, tt.status, tt.header, tt.body)
			_, _, err := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(context.Background(), "job-1")
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tt.want; got != want {
					t.Errorf("errors.Is(%v, %v): got %v, want %v", err, s, got, want)
				}
			}
			var apiErr *reconcile.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %T %v, want *APIError", err, err)
			}
			if apiErr.Status != tt.status || apiErr.Message != tt.msg || apiErr.RetryAfter != tt.retryAfter {
				t.Errorf("got %d %q retry %s, want %d %q retry %s",
					apiErr.Status, apiErr.Message, apiErr.RetryAfter, tt.status, tt.msg, tt.retryAfter)
			}
			if got := reconcile.Retryable(err); got != tt.retryable {
				t.Errorf("Retryable: got %v, want %v", got, tt.retryable)
			}
			if strings.Contains(err.Error(), apiKey) {
				t.Errorf("error leaks the key: %s", err)
			}
		})
	}
}

func TestRequestCarriesKeyAndHeaders(t *testing.T) {
	var got atomic.Pointer[http.Request]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Clone(context.Background()))
		io.WriteString(w, `{"jobId":"clx8k9v2t0001qz8x7r4e5w6m","status":"running"}`)
	}))
	defer srv.Close()

	c := reconcile.NewClient(srv.URL+"/", apiKey, nil) // a trailing slash is tolerated
	if _, _, err := c.GetJob(context.Background(), "clx8k9v2t0001qz8x7r4e5w6m"); err != nil {
		t.Fatal(err)
	}
	r := got.Load()
	if r.URL.Path != "/api/v1/jobs/clx8k9v2t0001qz8x7r4e5w6m" || r.Method != http.MethodGet {
		t.Errorf("request: got %s %s", r.Method, r.URL.Path)
	}
	if r.Header.Get("Authorization") != "Bearer "+apiKey || r.Header.Get("Accept") != "application/json" {
		t.Errorf("headers: got %v", r.Header)
	}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, apiKey) {
		t.Errorf("printing the client leaks the key: %s", s)
	}
}

func TestRateInfoOnEveryAnswer(t *testing.T) {
	reset := time.Unix(1_700_000_060, 0)
	header := map[string]string{
		"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "1700000060",
	}
	want := reconcile.RateInfo{Limit: 60, Remaining: 12, Reset: reset, Known: true}
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"success", 200, `{"jobId":"job-1","status":"completed"}`},
		{"rate limited", 429, `{"error":"Rate limit exceeded"}`},
		{"server error", 500, `{"error":"boom"}`},
		{"bad JSON", 200, `{"jobId":`},
	}
	for _, tt := range tests {
		srv := answering(t, tt.status, header, tt.body)
		_, got, _ := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(context.Background(), "job-1")
		if got != want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, want)
		}
	}
	srv := answering(t, 200, nil, `{"jobId":"job-1","status":"running"}`)
	if _, got, _ := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(context.Background(), "job-1"); got.Known {
		t.Errorf("no headers: got %+v, want Known false", got)
	}
}

func TestTransportErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name string
		url  string
		id   string
	}{
		{"connection refused", closed.URL, "job-1"},
		{"bad JSON", answering(t, 200, nil, `not json`).URL, "job-1"},
		{"unknown status", answering(t, 200, nil, `{"jobId":"job-1","status":"queued"}`).URL, "job-1"},
		{"another job", answering(t, 200, nil, `{"jobId":"job-2","status":"running"}`).URL, "job-1"},
		{"huge answer", answering(t, 200, nil, `{"stage":"`+strings.Repeat("x", 5<<20)+`"}`).URL, "job-1"},
	}
	for _, tt := range tests {
		_, _, err := reconcile.NewClient(tt.url, apiKey, nil).GetJob(context.Background(), tt.id)
		if !errors.Is(err, reconcile.ErrTransport) || !reconcile.Retryable(err) {
			t.Errorf("%s: got %v, want a retryable ErrTransport", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), apiKey) {
			t.Errorf("%s: error leaks the key: %s", tt.name, err)
		}
	}
}

func TestUnusableJobIDIsNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, id := range []string{"", "../admin", "a/b", strings.Repeat("x", 129)} {
		_, _, err := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(context.Background(), id)
		if !errors.Is(err, reconcile.ErrInvalid) {
			t.Errorf("GetJob(%q): got %v, want ErrInvalid", id, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests sent for unusable ids", hits.Load())
	}
}

func TestContextCancelIsHonoured(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(ctx, "job-1")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, reconcile.ErrTransport) {
		t.Errorf("got %v, want context.Canceled wrapped in ErrTransport", err)
	}
	if reconcile.Retryable(err) {
		t.Error("a cancelled call is not retryable")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to notice the cancel", d)
	}
}

func TestReport(t *testing.T) {
	projects := []reconcile.JobProject{
		{ID: "p1", Title: "One", Status: "completed"},
		{ID: "p2", Title: "Two", Status: "failed"},
	}
	details := []reconcile.CompletedDetail{
		{ProjectID: "p1", Title: "One", Status: "completed", FinalOutputURL: "https://cdn.example/p1.mp4"},
		{ProjectID: "p3", Title: "Three", Status: "completed", FinalOutputURL: "https://cdn.example/p3.mp4"},
	}
	tests := []struct {
		name string
		job  reconcile.JobStatus
		want store.Report
	}{{
		name: "running",
		job:  reconcile.JobStatus{JobID: "j", Status: "running", OverallProgress: 33.3, Stage: "scripting", TotalProjects: 1},
		want: store.Report{JobID: "j", Status: "running", Progress: 33, Stage: "scripting", TotalProjects: 1, Projects: []store.Project{}},
	}, {
		name: "progress over 100",
		job:  reconcile.JobStatus{JobID: "j", Status: "running", OverallProgress: 140},
		want: store.Report{JobID: "j", Status: "running", Progress: 100, Projects: []store.Project{}},
	}, {
		name: "negative progress",
		job:  reconcile.JobStatus{JobID: "j", Status: "pending", OverallProgress: -3},
		want: store.Report{JobID: "j", Status: "pending", Progress: 0, Projects: []store.Project{}},
	}, {
		name: "partial with videos",
		job: reconcile.JobStatus{JobID: "j", Status: "partial", OverallProgress: 97, Stage: "finished",
			TotalProjects: 3, CompletedProjects: 2, FailedProjects: 1, Projects: projects, CompletedDetails: details},
		want: store.Report{JobID: "j", Status: "partial", Progress: 100, Stage: "finished",
			TotalProjects: 3, CompletedProjects: 2, FailedProjects: 1, Projects: []store.Project{
				{ProjectID: "p1", Title: "One", Status: "completed", VideoURL: "https://cdn.example/p1.mp4"},
				{ProjectID: "p2", Title: "Two", Status: "failed"},
				{ProjectID: "p3", Title: "Three", Status: "completed", VideoURL: "https://cdn.example/p3.mp4"},
			}},
	}}
	for _, tt := range tests {
		if got := tt.job.Report(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestReportDecodesNouvelJSON(t *testing.T) {
	const answer = `{"jobId":"6f1c2a0e-4b7d-4c1e-9a55-2f7e3b1d9c80","status":"completed","overallProgress":100.0,
		"stage":"finished","totalProjects":1,"completedProjects":1,"failedProjects":0,
		"projects":[{"id":"p1","title":"One","status":"completed","progress":100}],
		"completedDetails":[{"projectId":"p1","title":"One","url":"https://shop.example/a",
		"finalOutputUrl":"https://cdn.example/p1.mp4","status":"completed","aspectRatio":"9:16",
		"durationSeconds":31.5,"sceneCount":6,"script":{"scenes":[]},"description":"d"}]}`
	srv := answering(t, 200, nil, answer)
	js, _, err := reconcile.NewClient(srv.URL, apiKey, nil).GetJob(context.Background(), "6f1c2a0e-4b7d-4c1e-9a55-2f7e3b1d9c80")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Project{{ProjectID: "p1", Title: "One", Status: "completed", VideoURL: "https://cdn.example/p1.mp4"}}
	if got := js.Report().Projects; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestPollAndWebhookAgree runs a job through the stand-in and checks that
// the poller's Report and the webhook carry the same projects.
func TestPollAndWebhookAgree(t *testing.T) {
	var webhook atomic.Pointer[[]byte]
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		webhook.Store(&b)
	}))
	defer hook.Close()
	nv := nouveltest.New(nouveltest.Options{
		APIKey: apiKey, WebhookSecret: "s", GeneratePolls: 3, GenerateOutcome: store.StatusPartial,
		RouteWebhook: func(string) string { return hook.URL },
	})
	defer nv.Close()
	c := reconcile.NewClient(nv.URL(), apiKey, nil)
	ctx := context.Background()

	raw, rate, err := c.Generate(ctx, []byte(`{"urls":["https://shop.example/a","https://shop.example/b"],
		"variantCount":2,"webhookUrl":"https://hooks.example.com/webhooks/nouvel"}`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := reconcile.ParseGenerate(raw)
	if err != nil || g.TotalProjects != 4 || g.Status != "running" {
		t.Fatalf("ParseGenerate: %+v, %v", g, err)
	}
	if !rate.Known || rate.Limit != 60 || rate.Remaining != 59 {
		t.Errorf("rate after one request: %+v", rate)
	}

	var js reconcile.JobStatus
	for i := 1; i <= 3; i++ {
		js, _, err = c.GetJob(ctx, g.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if r := js.Report(); i < 3 && (r.Status != "running" || r.Progress <= 0 || r.Progress >= 100) {
			t.Errorf("poll %d: %s at %d%%, want running between 0 and 100", i, r.Status, r.Progress)
		}
	}
	report := js.Report()
	if report.Status != store.StatusPartial || report.Progress != 100 || report.CompletedProjects != 2 {
		t.Fatalf("terminal report: %+v", report)
	}

	b := webhook.Load()
	if b == nil {
		t.Fatal("no webhook arrived")
	}
	var wb struct {
		Projects []store.Project `json:"projects"`
	}
	if err := json.Unmarshal(*b, &wb); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(report.Projects, wb.Projects) {
		t.Errorf("poll and webhook disagree:\n poll %+v\n hook %+v", report.Projects, wb.Projects)
	}
	if truth, _ := nv.Job(g.JobID); !reflect.DeepEqual(report.Projects, truth.Projects) {
		t.Errorf("poll and truth disagree:\n poll  %+v\n truth %+v", report.Projects, truth.Projects)
	}
}

func TestGenerateErrors(t *testing.T) {
	nv := nouveltest.New(nouveltest.Options{APIKey: apiKey})
	defer nv.Close()
	c := reconcile.NewClient(nv.URL(), apiKey, nil)

	raw, rate, err := c.Generate(context.Background(), []byte(`{"urls":["https://shop.example/a"],"webhookUrl":"http://hooks.example.com/x"}`))
	var apiErr *reconcile.APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, reconcile.ErrInvalid) || apiErr.Message != "webhookUrl must be an https URL" {
		t.Errorf("http webhookUrl: got %v", err)
	}
	if raw != nil || !rate.Known {
		t.Errorf("http webhookUrl: got raw %s, rate %+v", raw, rate)
	}

	_, _, err = reconcile.NewClient(nv.URL(), "nvl_wrong", nil).Generate(context.Background(), []byte(`{"urls":["https://shop.example/a"]}`))
	if !errors.Is(err, reconcile.ErrUnauthorized) || strings.Contains(err.Error(), "nvl_wrong") {
		t.Errorf("wrong key: got %v", err)
	}

	srv := answering(t, 200, nil, `{"status":"running"}`)
	raw, _, err = reconcile.NewClient(srv.URL, apiKey, nil).Generate(context.Background(), []byte(`{}`))
	if !errors.Is(err, reconcile.ErrTransport) || string(raw) != `{"status":"running"}` {
		t.Errorf("answer without jobId: got %v with raw %s", err, raw)
	}
}
