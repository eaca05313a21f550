package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

type statsAnswer struct {
	Jobs               int `json:"jobs"`
	Deliveries         int `json:"deliveries"`
	Invalid            int `json:"invalid"`
	Duplicates         int `json:"duplicates"`
	RejectedSignatures int `json:"rejectedSignatures"`
}

func TestWebhookSignatures(t *testing.T) {
	s := startService(t, map[string]string{"NOUVEL_WEBHOOK_SECRET": "old-secret, " + testSecret})
	body := event("sig-job", "completed")
	good := sign(testSecret, body)
	changed := bytes.Replace(body, []byte(`"totalProjects":1`), []byte(`"totalProjects":2`), 1)
	reordered := []byte("{ \"status\" : \"completed\",\n  \"jobId\":\"sig-reordered\", \"event\":\"job.completed\",\"projects\":[] ,\"totalProjects\":0}")
	escaped := []byte(`{"jobId":"sig-escaped","status":"completed","projects":[{"projectId":"p","title":"Caf\u00e9 \"ad\" \/ 1"}]}`)

	tests := []struct {
		name   string
		body   []byte
		header *string // nil: no header at all
		want   int
	}{
		{"missing", body, nil, 401},
		{"empty", body, ptr(""), 401},
		{"non-hex", body, ptr(strings.Repeat("zz", 32)), 401},
		{"too short", body, ptr(good[:62]), 401},
		{"too long", body, ptr(good + "00"), 401},
		{"prefixed", body, ptr("sha256=" + good), 401},
		{"wrong secret", body, ptr(sign("not-the-secret", body)), 401},
		{"body changed by one byte", changed, ptr(good), 401},
		{"signature of another body", body, ptr(sign(testSecret, event("other", "completed"))), 401},
		{"odd key order and whitespace", reordered, ptr(sign(testSecret, reordered)), 200},
		{"escapes signed as sent", escaped, ptr(sign(testSecret, escaped)), 200},
		{"rotated: old secret", event("sig-old", "completed"), ptr(sign("old-secret", event("sig-old", "completed"))), 200},
		{"current secret", body, ptr(good), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.Public+"/webhooks/nouvel", bytes.NewReader(tt.body))
			if tt.header != nil {
				req.Header["X-Nouvel-Signature"] = []string{*tt.header}
			}
			code, answer := do(t, req)
			if code != tt.want {
				t.Fatalf("got %d %s, want %d", code, answer, tt.want)
			}
			if code == 401 && answer != `{"error":"invalid signature"}`+"\n" {
				t.Fatalf("got answer %q, want invalid signature", answer)
			}
		})
	}
	var st statsAnswer
	s.adminGet("/v1/stats", &st)
	if st.Jobs != 4 || st.Deliveries != 4 || st.RejectedSignatures != 9 {
		t.Fatalf("got jobs=%d deliveries=%d rejected=%d, want 4 4 9: forged requests must store nothing",
			st.Jobs, st.Deliveries, st.RejectedSignatures)
	}
}

func ptr(s string) *string { return &s }

func TestWebhookDedupe(t *testing.T) {
	s := startService(t, nil)
	body := event("dup-job", "completed")
	for i, want := range []string{"false", "true", "true"} {
		code, answer := s.deliver(body, sign(testSecret, body))
		wantAnswer := `{"received":true,"jobId":"dup-job","duplicate":` + want + "}\n"
		if code != 200 || answer != wantAnswer {
			t.Fatalf("delivery %d: got %d %q, want 200 %q", i+1, code, answer, wantAnswer)
		}
	}
	other := event("dup-other", "failed")
	s.deliver(other, sign(testSecret, other))

	var j store.Job
	if code := s.adminGet("/v1/jobs/dup-job", &j); code != 200 {
		t.Fatalf("GET job: got %d", code)
	}
	if j.WebhookDeliveries != 3 || j.Seq != 1 || len(j.Deliveries) != 3 || !j.Deliveries[2].Duplicate {
		t.Fatalf("got webhookDeliveries=%d seq=%d deliveries=%+v, want 3, 1, 3 with the last duplicate",
			j.WebhookDeliveries, j.Seq, j.Deliveries)
	}
	var feed struct {
		Events []store.Job `json:"events"`
		Last   int64       `json:"last"`
	}
	s.adminGet("/v1/events?after=0", &feed)
	if len(feed.Events) != 2 || feed.Last != 2 {
		t.Fatalf("feed: got %d events last=%d, want 2 and 2 (a duplicate adds no feed entry)", len(feed.Events), feed.Last)
	}
}

func TestWebhookBadInput(t *testing.T) {
	s := startService(t, map[string]string{"NOUVELHOOK_MAX_BODY": "2KiB"})
	tests := []struct {
		name string
		body string
		want int
		msg  string
	}{
		{"bad JSON", `{"jobId":`, 400, "not a JSON"},
		{"not an object", `[1,2]`, 400, "not a JSON"},
		{"no jobId", `{"status":"completed"}`, 400, "jobId is missing"},
		{"over-long jobId", `{"jobId":"` + strings.Repeat("a", 129) + `","status":"completed"}`, 400, "longer than 128"},
		{"jobId with a slash", `{"jobId":"a/b","status":"completed"}`, 400, "letters, digits"},
		{"unknown status", `{"jobId":"st-1","status":"done"}`, 400, `status \"done\"`},
		{"running is not an end", `{"jobId":"st-2","status":"running"}`, 400, `status \"running\"`},
		{"oversized", `{"jobId":"big","status":"completed","pad":"` + strings.Repeat("x", 2100) + `"}`, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, answer := s.deliver([]byte(tt.body), sign(testSecret, []byte(tt.body)))
			if code != tt.want || !strings.Contains(answer, tt.msg) {
				t.Fatalf("got %d %s, want %d containing %q", code, answer, tt.want, tt.msg)
			}
		})
	}
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(method, s.Public+"/webhooks/nouvel", nil)
		if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
			t.Errorf("%s: got %d, want 405", method, code)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.Public+"/v1/jobs", nil)
	if code, _ := do(t, req); code != http.StatusNotFound {
		t.Errorf("admin route on the public listener: got %d, want 404", code)
	}
	var st statsAnswer
	s.adminGet("/v1/stats", &st)
	if st.Jobs != 0 || st.Invalid != 7 {
		t.Fatalf("got jobs=%d invalid=%d, want 0 and 7: signed but unusable bodies are kept, and make no job", st.Jobs, st.Invalid)
	}
}

func TestWebhookConcurrentDistinctDeliveries(t *testing.T) {
	s := startService(t, nil)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := event(fmt.Sprintf("par-%03d", i), "completed")
			req, _ := http.NewRequest(http.MethodPost, s.Public+"/webhooks/nouvel", bytes.NewReader(body))
			req.Header.Set("X-Nouvel-Signature", sign(testSecret, body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Sprintf("par-%03d: %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var feed struct {
		Events []store.Job `json:"events"`
		Last   int64       `json:"last"`
	}
	s.adminGet("/v1/events?after=0&limit=500", &feed)
	seen := map[string]bool{}
	for i, e := range feed.Events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, i+1)
		}
		seen[e.JobID] = true
	}
	if len(seen) != n || feed.Last != n {
		t.Fatalf("got %d distinct jobs, last=%d; want %d", len(seen), feed.Last, n)
	}
}

// startGet sends a GET in the background, on a connection of its own, and
// returns once the request has been written, so what the test does next
// happens while it is in flight.
func startGet(t *testing.T, url string, header http.Header) <-chan *http.Response {
	t.Helper()
	wrote := make(chan struct{})
	got := make(chan *http.Response, 1)
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) },
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			close(got)
			return
		}
		got <- resp
	}()
	<-wrote
	return got
}

func TestLongPollWakesOnDelivery(t *testing.T) {
	s := startService(t, nil)
	if code, _ := postJSON(t, s.Admin+"/v1/jobs", `{"jobId":"lp-job"}`); code != http.StatusCreated {
		t.Fatalf("track: got %d, want 201", code)
	}
	jobResp := startGet(t, s.Admin+"/v1/jobs/lp-job?wait=60s", nil)
	feedResp := startGet(t, s.Admin+"/v1/events?after=0&wait=60s", nil)
	body := event("lp-job", "partial")
	if code, _ := s.deliver(body, sign(testSecret, body)); code != 200 {
		t.Fatalf("deliver: got %d", code)
	}

	var j store.Job
	decodeResp(t, <-jobResp, &j)
	if !j.Terminal || j.Status != "partial" || j.Source != "webhook" {
		t.Fatalf("long-poll: got status=%s terminal=%v source=%s, want partial true webhook", j.Status, j.Terminal, j.Source)
	}
	var feed struct {
		Events []store.Job `json:"events"`
		Last   int64       `json:"last"`
	}
	decodeResp(t, <-feedResp, &feed)
	if len(feed.Events) != 1 || feed.Events[0].JobID != "lp-job" || feed.Last != 1 {
		t.Fatalf("feed long-poll: got %+v", feed)
	}
	var empty struct {
		Events []store.Job `json:"events"`
		Last   int64       `json:"last"`
	}
	s.adminGet("/v1/events?after=1", &empty)
	if len(empty.Events) != 0 || empty.Last != 1 {
		t.Fatalf("after=last: got %d events last=%d, want none and 1", len(empty.Events), empty.Last)
	}
	var unknown map[string]string
	if code := s.adminGet("/v1/jobs/never-heard-of?wait=1ms", &unknown); code != 404 || unknown["error"] == "" {
		t.Fatalf("unknown job: got %d %v, want 404 with an error", code, unknown)
	}
}

func TestEventStream(t *testing.T) {
	s := startService(t, nil)
	for _, id := range []string{"sse-1", "sse-2", "sse-3"} {
		body := event(id, "completed")
		s.deliver(body, sign(testSecret, body))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Admin+"/v1/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", "1") // a client resuming after seq 1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type: got %q", ct)
	}

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ids, jobs []string
	for len(jobs) < 3 && sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			ids = append(ids, id)
			if len(ids) == 2 { // the backlog is out; the next one arrives live
				body := event("sse-4", "failed")
				s.deliver(body, sign(testSecret, body))
			}
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var j store.Job
			if err := json.Unmarshal([]byte(data), &j); err != nil || !j.Terminal {
				t.Fatalf("data line %q: %v", data, err)
			}
			jobs = append(jobs, j.JobID)
		}
	}
	if strings.Join(ids, ",") != "2,3,4" || strings.Join(jobs, ",") != "sse-2,sse-3,sse-4" {
		t.Fatalf("got ids %v for jobs %v, want 2,3,4 for sse-2,sse-3,sse-4 (err %v)", ids, jobs, sc.Err())
	}
}

func TestWebhookChunkedOversizeAndAttempt(t *testing.T) {
	s := startService(t, map[string]string{"NOUVELHOOK_MAX_BODY": "1KiB"})
	big := []byte(`{"jobId":"chunked","status":"completed","pad":"` + strings.Repeat("x", 1100) + `"}`)
	req, _ := http.NewRequest(http.MethodPost, s.Public+"/webhooks/nouvel", io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1 // chunked: the limit must hold without a Content-Length
	req.Header.Set("X-Nouvel-Signature", sign(testSecret, big))
	if code, body := do(t, req); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversize body: got %d %s, want 413", code, body)
	}

	body := event("attempt-3", "completed")
	req, _ = http.NewRequest(http.MethodPost, s.Public+"/webhooks/nouvel", bytes.NewReader(body))
	req.Header.Set("X-Nouvel-Signature", sign(testSecret, body))
	req.Header.Set("X-Nouvel-Attempt", "3")
	if code, answer := do(t, req); code != 200 {
		t.Fatalf("deliver: got %d %s", code, answer)
	}
	var j store.Job
	s.adminGet("/v1/jobs/attempt-3", &j)
	if len(j.Deliveries) != 1 || j.Deliveries[0].Attempt != 3 {
		t.Fatalf("got deliveries %+v, want one with attempt 3", j.Deliveries)
	}
}

func TestLogSurvivesRestart(t *testing.T) {
	s := startService(t, nil)
	body := event("restart-job", "completed")
	s.deliver(body, sign(testSecret, body))
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s2 := startService(t, map[string]string{"NOUVELHOOK_DB": s.DB})
	var j store.Job
	if code := s2.adminGet("/v1/jobs/restart-job", &j); code != 200 || j.Seq != 1 || len(j.Deliveries) != 1 {
		t.Fatalf("after restart: got %d %+v", code, j)
	}
	next := event("restart-next", "completed")
	s2.deliver(next, sign(testSecret, next))
	if s2.adminGet("/v1/jobs/restart-next", &j); j.Seq != 2 {
		t.Fatalf("seq after restart: got %d, want 2", j.Seq)
	}
}

func TestAdminToken(t *testing.T) {
	s := startService(t, map[string]string{"NOUVELHOOK_ADMIN_TOKEN": "admin-tok"})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 401, "/v1/jobs": 401, "/metrics": 401, "/v1/stats": 401} {
		req, _ := http.NewRequest(http.MethodGet, s.Admin+path, nil)
		if code, _ := do(t, req); code != want {
			t.Errorf("%s without token: got %d, want %d", path, code, want)
		}
		req.Header.Set("Authorization", "Bearer admin-tok")
		if code, _ := do(t, req); code != 200 {
			t.Errorf("%s with token: got %d, want 200", path, code)
		}
		req.Header.Set("Authorization", "Bearer admin-to")
		if code, _ := do(t, req); code != want {
			t.Errorf("%s with wrong token: got %d, want %d", path, code, want)
		}
	}
}

func TestReadyzAndMetrics(t *testing.T) {
	s := startService(t, nil)
	var ready map[string]any
	if code := s.adminGet("/readyz", &ready); code != 200 || ready["ready"] != true {
		t.Fatalf("readyz: got %d %v", code, ready)
	}
	body := event("m-1", "completed")
	s.deliver(body, sign(testSecret, body))
	s.deliver(body, sign(testSecret, body))
	s.deliver(body, "00")
	req, _ := http.NewRequest(http.MethodGet, s.Admin+"/metrics", nil)
	_, text := do(t, req)
	for _, want := range []string{
		`nouvelhook_webhook_deliveries_total{outcome="accepted"} 1`,
		`nouvelhook_webhook_deliveries_total{outcome="duplicate"} 1`,
		`nouvelhook_webhook_signature_rejections_total 1`,
		`nouvelhook_webhook_duplicates_total 1`,
		`nouvelhook_webhook_ack_seconds_count 3`,
		`nouvelhook_jobs{status="completed"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func decodeResp(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", resp.Request.URL, err)
	}
}

// Shutdown ends a long-poll with the job as it stands, never an empty answer.
func TestLongPollAnswersAtShutdown(t *testing.T) {
	s := startService(t, nil)
	if code, body := postJSON(t, s.Admin+"/v1/jobs", `{"jobId":"shutdown-job"}`); code != http.StatusCreated {
		t.Fatalf("track: got %d %s", code, body)
	}
	respc := startGet(t, s.Admin+"/v1/jobs/shutdown-job?wait=120s", nil)
	// The server accepts connections in order, so once a later connection
	// is answered the long-poll's has been accepted, and shutdown waits
	// for it.
	if code := s.adminGet("/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz: got %d", code)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	resp := <-respc
	var j store.Job
	decodeResp(t, resp, &j)
	if resp.StatusCode != http.StatusOK || j.JobID != "shutdown-job" || j.Status != "pending" {
		t.Fatalf("got %d %+v, want 200 with the job as it stands", resp.StatusCode, j)
	}
}

// curl -d sends a form content type; the body is JSON all the same.
func TestTrackAcceptsJSONWhateverTheContentType(t *testing.T) {
	s := startService(t, nil)
	req, _ := http.NewRequest(http.MethodPost, s.Admin+"/v1/jobs", strings.NewReader(`{"jobId":"form-job"}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, body := do(t, req); code != http.StatusCreated {
		t.Fatalf("got %d %s, want 201", code, body)
	}
}
