package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
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
	// Identical bytes are stored once and counted.
	if j.WebhookDeliveries != 3 || j.Seq != 1 || len(j.Deliveries) != 1 || j.Deliveries[0].Copies != 3 {
		t.Fatalf("got webhookDeliveries=%d seq=%d deliveries=%+v, want 3, 1, one delivery with 3 copies",
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

// curl -d sends a form content type, which the admin API refuses without
// reading: a browser form sends the same.
func TestTrackRefusesFormContentType(t *testing.T) {
	s := startService(t, nil)
	req, _ := http.NewRequest(http.MethodPost, s.Admin+"/v1/jobs", strings.NewReader(`{"jobId":"form-job"}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, body := do(t, req); code != http.StatusUnsupportedMediaType {
		t.Fatalf("got %d %s, want 415", code, body)
	}
	if code := s.adminGet("/v1/jobs/form-job", nil); code != http.StatusNotFound {
		t.Fatalf("form-job: got %d, want 404 (not tracked)", code)
	}
}

// A page on another site cannot spend Nouvel credits through an admin
// listener that has no token: its generate POSTs are refused before the
// body is read, and Nouvel never hears of them.
func TestCrossSiteGenerateNeverReachesNouvel(t *testing.T) {
	var generates atomic.Int64
	nouvel := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/generate") {
			generates.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jobId":"paid-job","totalProjects":1,"status":"running"}`)
			return
		}
		http.NotFound(w, r)
	}))
	defer nouvel.Close()
	s := startService(t, map[string]string{"NOUVEL_API_KEY": "nvl_test_key", "NOUVEL_API_BASE_URL": nouvel.URL})
	const body = `{"urls":["https://shop.example/p/1"],"variantCount":1}`
	tests := []struct {
		name, origin, ctype string
		want                int
	}{
		{"text/plain from evil.example", "http://evil.example", "text/plain", 403},
		{"form from evil.example", "http://evil.example", "application/x-www-form-urlencoded", 403},
		{"multipart from evil.example", "http://evil.example", "multipart/form-data; boundary=b", 403},
		{"JSON from evil.example", "http://evil.example", "application/json", 403},
		{"text/plain, no origin", "", "text/plain", 415},
		{"no content type, no origin", "", "", 415},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, s.Admin+"/v1/generate", strings.NewReader(body))
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		if tt.ctype != "" {
			req.Header.Set("Content-Type", tt.ctype)
		}
		if code, answer := do(t, req); code != tt.want {
			t.Errorf("%s: got %d %s, want %d", tt.name, code, answer, tt.want)
		}
	}
	if n := generates.Load(); n != 0 {
		t.Fatalf("Nouvel received %d generate requests, want 0", n)
	}
	// The same body as JSON from this machine goes through, so the count
	// above would have seen a leak.
	if code, answer := postJSON(t, s.Admin+"/v1/generate", body); code != http.StatusCreated || generates.Load() != 1 {
		t.Fatalf("JSON generate: got %d %s and %d at Nouvel, want 201 and 1", code, answer, generates.Load())
	}
}

// The event stream is an admin route like the others: a rebound Host or a
// cross-site Origin never gets a stream.
func TestEventStreamRefusesBrowsers(t *testing.T) {
	s := startService(t, nil)
	for _, tt := range []struct {
		name, host, origin string
		want               int
	}{
		{"rebound host", "rebind.attacker.example:8081", "", http.StatusMisdirectedRequest},
		{"cross-site origin", "", "http://evil.example", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.Admin+"/v1/events", nil)
		req.Header.Set("Accept", "text/event-stream")
		if tt.host != "" {
			req.Host = tt.host
		}
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		code, body := do(t, req)
		if code != tt.want || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: got %d %q, want %d with an error", tt.name, code, body, tt.want)
		}
	}
}

// With a token, the token is what keeps browsers out: other Host names
// work, and only the content-type rule remains.
func TestAdminTokenReplacesTheHostCheck(t *testing.T) {
	s := startService(t, map[string]string{"NOUVELHOOK_ADMIN_TOKEN": "admin-tok"})
	req, _ := http.NewRequest(http.MethodGet, s.Admin+"/v1/jobs", nil)
	req.Host = "nouvelhook-admin.default.svc:8081"
	req.Header.Set("Authorization", "Bearer admin-tok")
	if code, body := do(t, req); code != http.StatusOK {
		t.Errorf("service name as Host with the token: got %d %s, want 200", code, body)
	}
	req, _ = http.NewRequest(http.MethodPost, s.Admin+"/v1/jobs", strings.NewReader(`{"jobId":"tok-job"}`))
	req.Header.Set("Authorization", "Bearer admin-tok")
	req.Header.Set("Content-Type", "text/plain")
	if code, body := do(t, req); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST with the token: got %d %s, want 415", code, body)
	}
}

// rawRequest writes head to the public listener on a fresh connection and
// reads the answer's status.
func rawRequest(t *testing.T, base, head string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", head, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPublicListenerLimits(t *testing.T) {
	s := startService(t, nil)
	header := func(n int) string { return "X-Pad: " + strings.Repeat("a", n) + "\r\n" }
	tests := []struct {
		name string
		head string
		want int
	}{
		{"14 KiB of headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + header(14<<10) + "\r\n", http.StatusOK},
		{"17 KiB of headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + header(17<<10) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"OPTIONS on the webhook path", "OPTIONS /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n\r\n", http.StatusMethodNotAllowed},
		{"GET on the webhook path", "GET /webhooks/nouvel HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusMethodNotAllowed},
		{"PUT on the webhook path", "PUT /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed},
		// The body is announced and never sent: answered at once, since
		// nothing without a signature is read.
		{"no signature, body never sent", "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", http.StatusUnauthorized},
		{"malformed signature, body never sent", "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nX-Nouvel-Signature: abc\r\nContent-Length: 1000\r\n\r\n", http.StatusUnauthorized},
		{"chunked, no signature, body never sent", "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		if got := rawRequest(t, s.Public, tt.head); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
	req, _ := http.NewRequest(http.MethodOptions, s.Public+"/webhooks/nouvel", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("OPTIONS: got %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestPublicReadyz(t *testing.T) {
	s := startService(t, nil)
	code, body := do(t, mustRequest(t, http.MethodGet, s.Public+"/readyz"))
	if code != http.StatusOK || strings.TrimSpace(body) != `{"ready":true}` {
		t.Fatalf("public readyz: got %d %s, want 200 {\"ready\":true}", code, body)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Without NOUVEL_API_KEY a tracked job is kept, and the answer says that
// nothing will poll it.
func TestTrackWithoutReconcilerWarns(t *testing.T) {
	s := startService(t, nil)
	code, body := postJSON(t, s.Admin+"/v1/jobs", `{"jobId":"lonely-job"}`)
	var ans struct {
		JobID   string `json:"jobId"`
		Warning string `json:"warning"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	const want = "NOUVEL_API_KEY is not set: nothing polls this job; only its webhook can end it"
	if code != http.StatusCreated || ans.JobID != "lonely-job" || ans.Warning != want {
		t.Fatalf("got %d %s, want 201 for lonely-job with warning %q", code, body, want)
	}
}

// A ?wait= answer is the same shape as a plain GET: the job with its
// deliveries.
func TestWaitAnswerHasDeliveries(t *testing.T) {
	s := startService(t, nil)
	body := event("wait-deliv", "completed")
	if code, ans := s.deliver(body, sign(testSecret, body)); code != http.StatusOK {
		t.Fatalf("deliver: got %d %s", code, ans)
	}
	for _, path := range []string{"/v1/jobs/wait-deliv", "/v1/jobs/wait-deliv?wait=5s"} {
		var j struct {
			JobID      string           `json:"jobId"`
			Deliveries []map[string]any `json:"deliveries"`
		}
		if code := s.adminGet(path, &j); code != http.StatusOK || j.JobID != "wait-deliv" || len(j.Deliveries) != 1 {
			t.Errorf("%s: got %d %+v, want 200 with 1 delivery", path, code, j)
		}
	}
}

// A job with no deliveries (tracked, or ended by a poll) still answers
// "deliveries":[] and "deliveriesTotal":0, so a client can read both keys
// of any job.
func TestJobAnswerAlwaysHasDeliveries(t *testing.T) {
	s := startService(t, nil)
	if _, stderr, err := s.cli("track", "no-deliv"); err != nil {
		t.Fatalf("track: %v %s", err, stderr)
	}
	var j map[string]json.RawMessage
	if code := s.adminGet("/v1/jobs/no-deliv", &j); code != http.StatusOK {
		t.Fatalf("get: %d", code)
	}
	if got := string(j["deliveries"]); got != "[]" {
		t.Errorf("deliveries: got %q, want []", got)
	}
	if got := string(j["deliveriesTotal"]); got != "0" {
		t.Errorf("deliveriesTotal: got %q, want 0", got)
	}
}

// rejectedSignatures counts since the process started, and says since when.
func TestStatsSaysSinceWhenSignaturesWereRejected(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Second)
	s := startService(t, nil)
	s.deliver([]byte(`{}`), strings.Repeat("0", 64))
	var st struct {
		RejectedSignatures int    `json:"rejectedSignatures"`
		Since              string `json:"rejectedSignaturesSince"`
	}
	s.adminGet("/v1/stats", &st)
	since, err := time.Parse(time.RFC3339, st.Since)
	if err != nil || st.RejectedSignatures != 1 || since.Before(before) || since.After(time.Now()) {
		t.Fatalf("got %+v (%v), want 1 rejected since the service started (after %s)", st, err, before)
	}
}

// Past NOUVELHOOK_MAX_CONNS no more connections are accepted; one that
// stalls while sending its request is cut to let the next in, so a slow
// client cannot keep a delivery waiting.
func TestPublicConnectionCap(t *testing.T) {
	s := startService(t, map[string]string{"NOUVELHOOK_MAX_CONNS": "1"})
	addr := strings.TrimPrefix(s.Public, "http://")
	holder, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	io.WriteString(holder, "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nX-Slow: ") // never finished

	client := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
	resp, err := client.Get(s.Public + "/healthz")
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second connection: got %d, want 200", resp.StatusCode)
	}
	// The holder was closed before the second connection was accepted, so
	// its end is already here; the server's own header timeout (10 s) is
	// far off.
	holder.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := holder.Read(make([]byte, 512)); err != io.EOF {
		t.Fatalf("stalled holder: read %d bytes, %v; want it cut (EOF) to make room", n, err)
	}
}
