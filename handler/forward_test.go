package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// openForwardStore opens a real SQLite log in a temporary folder with
// forwarding on: every job that ends queues its forward.
func openForwardStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{Forward: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeForwarder is the forwarder's side of the admin API over the store
// itself: it is paused when the store says so, and counts its kicks. It
// sends nothing; the tests move forwards through the store's own claims.
type storeForwarder struct {
	st    store.Store
	kicks atomic.Int32
}

func (f *storeForwarder) Ready() error {
	s, err := f.st.ForwardStats(context.Background())
	if err != nil {
		return err
	}
	if s.Paused {
		return errors.New("forwarding is paused: " + s.PauseReason)
	}
	return nil
}

func (f *storeForwarder) Kick() { f.kicks.Add(1) }

// api is a running admin server and a client for it.
type api struct {
	t    *testing.T
	base string
}

// startAdmin runs the admin server on d, filled with a metrics registry and
// a logger when they are missing, on a free port.
func startAdmin(t *testing.T, d Deps) *api {
	t.Helper()
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	d.Logger = zerolog.Nop()
	return &api{t: t, base: "http://" + serveOn(t, NewAdmin(d))}
}

// do sends a request, with body as JSON when not nil, and returns the
// status, the headers and the body.
func (a *api) do(method, path string, body any) (int, http.Header, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		if s, ok := body.(string); ok { // sent as it is, to test bad bodies
			b = []byte(s)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// json sends a request and decodes the answer, failing unless its status
// is want.
func (a *api) json(method, path string, body any, want int, out any) {
	a.t.Helper()
	code, _, b := a.do(method, path, body)
	if code != want {
		a.t.Fatalf("%s %s: got %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// wantError checks that a request is answered with status and an error
// containing msg.
func (a *api) wantError(method, path string, body any, status int, msg string) {
	a.t.Helper()
	code, _, b := a.do(method, path, body)
	var ans struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || code != status || !strings.Contains(ans.Error, msg) {
		a.t.Errorf("%s %s: got %d %s, want %d with an error containing %q", method, path, code, b, status, msg)
	}
}

// endJob ends a job by a signed webhook's path into the store and returns
// the exact bytes delivered.
func endJob(t *testing.T, st store.Store, id string, status store.Status) []byte {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"event":"job.completed","jobId":%q,"status":%q,"totalProjects":1,"completedProjects":1,"failedProjects":0,`+
		`"projects":[{"projectId":"p1","title":"<b>T</b>","status":"completed","videoUrl":"https://cdn.example/v.mp4"}]}`, id, status))
	deliver(t, st, body)
	return body
}

// deliver records body as a verified delivery.
func deliver(t *testing.T, st store.Store, body []byte) {
	t.Helper()
	report, id, err := ParseEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordWebhook(context.Background(), store.WebhookDelivery{
		Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: report, JobID: id,
	}); err != nil {
		t.Fatal(err)
	}
}

// finishNext claims the next due forward, which must be jobID's, and
// records r for it.
func finishNext(t *testing.T, st store.Store, jobID string, r store.ForwardResult) {
	t.Helper()
	ctx := context.Background()
	claims, err := st.ClaimForwards(ctx, time.Now().Add(time.Minute), 1, time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) != 1 || claims[0].Job.JobID != jobID {
		t.Fatalf("claimed %+v, want %s's forward", claims, jobID)
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	if ok, err := st.FinishForward(ctx, claims[0], r); err != nil || !ok {
		t.Fatalf("finish %s: ok %v, %v", jobID, ok, err)
	}
}

// forwardList is GET /v1/forwards's answer.
type forwardList struct {
	Forwards   []store.QueuedForward `json:"forwards"`
	NextCursor string                `json:"nextCursor"`
}

// states returns each forward's job and state, in order, as "job:state".
func (l forwardList) states() []string {
	out := []string{}
	for _, f := range l.Forwards {
		out = append(out, f.JobID+":"+string(f.State))
	}
	return out
}

func TestForwardRoutesAreRefusedWhenForwardingIsOff(t *testing.T) {
	st := openForwardStore(t)
	endJob(t, st, "job-1", store.StatusCompleted)
	a := startAdmin(t, Deps{Store: st})
	const msg = "forwarding is off: set NOUVELHOOK_FORWARD_URL"
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/v1/forwards", nil},
		{http.MethodGet, "/v1/forwards?state=failed", nil},
		{http.MethodPost, "/v1/forwards/retry", map[string]any{"jobIds": []string{"job-1"}}},
		{http.MethodPost, "/v1/forwards/replay", map[string]any{"after": 0}},
		{http.MethodPost, "/v1/forwards/resume", nil},
	} {
		code, _, b := a.do(r.method, r.path, r.body)
		if code != http.StatusConflict || string(b) != `{"error":"`+msg+`"}`+"\n" {
			t.Errorf("%s %s: got %d %s, want 409 %q", r.method, r.path, code, b, msg)
		}
	}
	// Nothing was queued again by the refused retry and replay.
	l, _, err := st.ListForwards(context.Background(), store.ForwardFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].State != store.ForwardPending || !l[0].EnqueuedAt.Equal(*mustJob(t, st, "job-1").TerminalAt) {
		t.Errorf("queue after refused calls: %+v, want job-1 pending as queued at its end", l)
	}

	var stats map[string]json.RawMessage
	a.json(http.MethodGet, "/v1/stats", nil, http.StatusOK, &stats)
	if got, ok := stats["forwards"]; !ok || string(got) != "null" {
		t.Errorf("stats forwards: got %s (present %v), want null", got, ok)
	}
	var ready map[string]any
	a.json(http.MethodGet, "/readyz", nil, http.StatusOK, &ready)
}

func mustJob(t *testing.T, st store.Store, id string) store.Job {
	t.Helper()
	j, err := st.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestForwardListOrderFilterAndPages(t *testing.T) {
	st := openForwardStore(t)
	for _, id := range []string{"job-a", "job-b", "job-c", "job-d"} {
		endJob(t, st, id, store.StatusCompleted)
	}
	// job-a delivered; job-b failed after a 500; job-c retried later.
	finishNext(t, st, "job-a", store.ForwardResult{Status: 204, State: store.ForwardDelivered})
	finishNext(t, st, "job-b", store.ForwardResult{Status: 500, Err: "app answered 500", State: store.ForwardFailed})
	next := time.Now().Add(time.Hour)
	finishNext(t, st, "job-c", store.ForwardResult{Status: 503, Err: "app answered 503", State: store.ForwardPending, Next: next})

	a := startAdmin(t, Deps{Store: st, Forwarder: &storeForwarder{st: st}})
	var l forwardList
	a.json(http.MethodGet, "/v1/forwards", nil, http.StatusOK, &l)
	want := []string{"job-b:failed", "job-c:pending", "job-d:pending", "job-a:delivered"}
	if !reflect.DeepEqual(l.states(), want) || l.NextCursor != "" {
		t.Fatalf("queue: got %v next %q, want %v and no next page", l.states(), l.NextCursor, want)
	}
	b, c := l.Forwards[0], l.Forwards[1]
	if b.Attempts != 1 || b.LastStatus != 500 || b.LastError != "app answered 500" || b.NextAttemptAt != nil || b.Seq != 2 {
		t.Errorf("failed forward: got %+v, want 1 attempt, 500, its error, no next attempt, seq 2", b)
	}
	if c.NextAttemptAt == nil || !c.NextAttemptAt.Equal(next.Truncate(time.Millisecond)) && !c.NextAttemptAt.Equal(next) {
		t.Errorf("pending forward: next attempt %v, want %v", c.NextAttemptAt, next)
	}
	if l.Forwards[3].DeliveredAt == nil {
		t.Errorf("delivered forward: %+v, want deliveredAt set", l.Forwards[3])
	}

	l = forwardList{}
	a.json(http.MethodGet, "/v1/forwards?state=failed,delivered", nil, http.StatusOK, &l)
	if got := l.states(); !reflect.DeepEqual(got, []string{"job-b:failed", "job-a:delivered"}) {
		t.Errorf("state=failed,delivered: got %v", got)
	}
	l = forwardList{}
	a.json(http.MethodGet, "/v1/forwards?state=paused", nil, http.StatusOK, &l)
	if l.Forwards == nil || len(l.Forwards) != 0 {
		t.Errorf("state=paused: got %+v, want an empty list, not null", l.Forwards)
	}

	// Pages of one walk the same order.
	var paged []string
	q := "/v1/forwards?limit=1"
	for range 10 {
		l = forwardList{}
		a.json(http.MethodGet, q, nil, http.StatusOK, &l)
		paged = append(paged, l.states()...)
		if l.NextCursor == "" {
			break
		}
		q = "/v1/forwards?limit=1&cursor=" + l.NextCursor
	}
	if !reflect.DeepEqual(paged, want) {
		t.Errorf("pages of 1: got %v, want %v", paged, want)
	}

	a.wantError(http.MethodGet, "/v1/forwards?state=lost", nil, http.StatusBadRequest, `state "lost" is not one of`)
	a.wantError(http.MethodGet, "/v1/forwards?limit=0", nil, http.StatusBadRequest, "")
	a.wantError(http.MethodGet, "/v1/forwards?limit=501", nil, http.StatusBadRequest, "")
	a.wantError(http.MethodGet, "/v1/forwards?limit=x", nil, http.StatusBadRequest, `limit "x"`)
	a.wantError(http.MethodGet, "/v1/forwards?cursor=nonsense", nil, http.StatusBadRequest, "")
}

func TestForwardRetry(t *testing.T) {
	st := openForwardStore(t)
	endJob(t, st, "job-a", store.StatusCompleted)
	endJob(t, st, "job-b", store.StatusFailed)
	finishNext(t, st, "job-a", store.ForwardResult{Status: 500, Err: "app answered 500", State: store.ForwardFailed})
	finishNext(t, st, "job-b", store.ForwardResult{Status: 200, State: store.ForwardDelivered})
	if _, _, err := st.Track(context.Background(), "job-running", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	fw := &storeForwarder{st: st}
	a := startAdmin(t, Deps{Store: st, Forwarder: fw})

	// Refusals queue nothing and kick nothing.
	for _, tt := range []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"no body", `{}`, http.StatusBadRequest, `body must be JSON like {"jobIds":["…"]}`},
		{"not JSON", `jobIds=job-a`, http.StatusBadRequest, `body must be JSON like {"jobIds":["…"]}`},
		{"a misspelt field", `{"jobs":["job-a"]}`, http.StatusBadRequest, `body must be JSON like {"jobIds":["…"]}`},
		{"two values", `{"jobIds":["job-a"]}{}`, http.StatusBadRequest, `body must be JSON like {"jobIds":["…"]}`},
		{"no ids", map[string]any{"jobIds": []string{}}, http.StatusBadRequest, "jobIds must name at least one job"},
		{"a bad id", map[string]any{"jobIds": []string{"job-a", "job a"}}, http.StatusBadRequest, `jobId "job a" must be`},
		{"an unknown job", map[string]any{"jobIds": []string{"job-a", "job-nope"}}, http.StatusNotFound, ""},
		{"a job not ended", map[string]any{"jobIds": []string{"job-a", "job-running"}}, http.StatusBadRequest, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a.t = t
			a.wantError(http.MethodPost, "/v1/forwards/retry", tt.body, tt.status, tt.msg)
		})
	}
	a.t = t
	if n := fw.kicks.Load(); n != 0 {
		t.Fatalf("refused retries kicked the forwarder %d times, want 0", n)
	}
	var l forwardList
	a.json(http.MethodGet, "/v1/forwards", nil, http.StatusOK, &l)
	if got := l.states(); !reflect.DeepEqual(got, []string{"job-a:failed", "job-b:delivered"}) {
		t.Fatalf("after refused retries: got %v, want them unchanged", got)
	}

	var ans map[string]int
	a.json(http.MethodPost, "/v1/forwards/retry", map[string]any{"jobIds": []string{"job-b", "job-a", "job-a"}}, http.StatusOK, &ans)
	if !reflect.DeepEqual(ans, map[string]int{"queued": 2}) {
		t.Errorf("retry: got %v, want queued 2", ans)
	}
	if n := fw.kicks.Load(); n != 1 {
		t.Errorf("retry kicked the forwarder %d times, want 1", n)
	}
	l = forwardList{}
	a.json(http.MethodGet, "/v1/forwards", nil, http.StatusOK, &l)
	if got := l.states(); !reflect.DeepEqual(got, []string{"job-a:pending", "job-b:pending"}) {
		t.Fatalf("after retry: got %v, want both pending", got)
	}
	for _, f := range l.Forwards {
		if f.Attempts != 0 || f.NextAttemptAt == nil {
			t.Errorf("retried %s: %+v, want attempts reset and due", f.JobID, f.Forward)
		}
	}
}

func TestForwardReplay(t *testing.T) {
	st := openForwardStore(t)
	for _, id := range []string{"job-1", "job-2", "job-3"} {
		endJob(t, st, id, store.StatusCompleted)
		finishNext(t, st, id, store.ForwardResult{Status: 200, State: store.ForwardDelivered})
	}
	fw := &storeForwarder{st: st}
	a := startAdmin(t, Deps{Store: st, Forwarder: fw})
	a.wantError(http.MethodPost, "/v1/forwards/replay", `{}`, http.StatusBadRequest, `body must be JSON like {"after":SEQ}`)
	a.wantError(http.MethodPost, "/v1/forwards/replay", `{"after":"1"}`, http.StatusBadRequest, `body must be JSON like {"after":SEQ}`)
	a.wantError(http.MethodPost, "/v1/forwards/replay", `{"after":-1}`, http.StatusBadRequest, "after -1 must be a seq of 0 or more")
	if n := fw.kicks.Load(); n != 0 {
		t.Fatalf("refused replays kicked the forwarder %d times, want 0", n)
	}

	var ans map[string]int
	a.json(http.MethodPost, "/v1/forwards/replay", map[string]any{"after": 1}, http.StatusOK, &ans)
	if ans["queued"] != 2 || fw.kicks.Load() != 1 {
		t.Errorf("replay after 1: got %v and %d kicks, want queued 2 and 1 kick", ans, fw.kicks.Load())
	}
	var l forwardList
	a.json(http.MethodGet, "/v1/forwards", nil, http.StatusOK, &l)
	if got := l.states(); !reflect.DeepEqual(got, []string{"job-2:pending", "job-3:pending", "job-1:delivered"}) {
		t.Errorf("after replay: got %v", got)
	}
	a.json(http.MethodPost, "/v1/forwards/replay", map[string]any{"after": 3}, http.StatusOK, &ans)
	if ans["queued"] != 0 {
		t.Errorf("replay after the last seq: got %v, want queued 0", ans)
	}
}

func TestForwardPauseShowsOnAdminReadyzAndResumeEndsIt(t *testing.T) {
	st := openForwardStore(t)
	endJob(t, st, "job-gone", store.StatusCompleted)
	endJob(t, st, "job-next", store.StatusCompleted)
	const reason = "the app answered 410 Gone at https://app.example/hooks"
	finishNext(t, st, "job-gone", store.ForwardResult{Status: 410, Err: reason, State: store.ForwardPaused})

	fw := &storeForwarder{st: st}
	d := Deps{Store: st, Forwarder: fw, WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20, Verifier: NewVerifier([]string{"s"})}
	a := startAdmin(t, d)
	d.Metrics, d.Logger = NewMetrics(nil), zerolog.Nop()
	public := "http://" + serveOn(t, NewPublic(d))

	var ready map[string]any
	a.json(http.MethodGet, "/readyz", nil, http.StatusServiceUnavailable, &ready)
	if ready["ready"] != false || ready["reason"] != "forwarding is paused: "+reason {
		t.Errorf("admin readyz while paused: got %v, want not ready with the pause's reason", ready)
	}
	resp, err := http.Get(public + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != `{"ready":true}`+"\n" {
		t.Errorf("public readyz while paused: got %d %s, want 200 ready: it is about taking webhooks", resp.StatusCode, b)
	}

	var stats struct {
		Forwards *store.ForwardStats `json:"forwards"`
	}
	a.json(http.MethodGet, "/v1/stats", nil, http.StatusOK, &stats)
	f := stats.Forwards
	if f == nil || !f.Paused || f.PauseReason != reason || f.Depth != 2 || f.ByState[store.ForwardPaused] != 1 ||
		f.ByState[store.ForwardPending] != 1 || f.OldestPending == nil {
		t.Fatalf("stats while paused: got %+v, want paused with the reason, depth 2, one paused, one pending", f)
	}

	var ans map[string]bool
	a.json(http.MethodPost, "/v1/forwards/resume", nil, http.StatusOK, &ans)
	if !reflect.DeepEqual(ans, map[string]bool{"resumed": true}) || fw.kicks.Load() != 1 {
		t.Errorf("resume: got %v and %d kicks, want resumed true and 1 kick", ans, fw.kicks.Load())
	}
	ready = nil
	a.json(http.MethodGet, "/readyz", nil, http.StatusOK, &ready)
	var l forwardList
	a.json(http.MethodGet, "/v1/forwards", nil, http.StatusOK, &l)
	if got := l.states(); !reflect.DeepEqual(got, []string{"job-gone:pending", "job-next:pending"}) {
		t.Errorf("after resume: got %v, want both pending", got)
	}
	stats.Forwards = nil
	a.json(http.MethodGet, "/v1/stats", nil, http.StatusOK, &stats)
	if f := stats.Forwards; f == nil || f.Paused || f.PauseReason != "" || f.ByState[store.ForwardPending] != 2 ||
		f.ByState[store.ForwardDelivered] != 0 || len(f.ByState) != 4 {
		t.Errorf("stats after resume: got %+v, want not paused, two pending, all four states counted", f)
	}
	// Resuming when not paused is harmless.
	a.json(http.MethodPost, "/v1/forwards/resume", nil, http.StatusOK, &ans)
}

// The queue's routes and the timeline's hold data, so they need the token.
func TestForwardAndTimelineRoutesNeedTheToken(t *testing.T) {
	st := openForwardStore(t)
	endJob(t, st, "job-1", store.StatusCompleted)
	a := startAdmin(t, Deps{Store: st, Forwarder: &storeForwarder{st: st}, AdminToken: "tok"})
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/forwards"},
		{http.MethodPost, "/v1/forwards/retry"},
		{http.MethodPost, "/v1/forwards/replay"},
		{http.MethodPost, "/v1/forwards/resume"},
		{http.MethodGet, "/v1/jobs/job-1/timeline"},
		{http.MethodGet, "/v1/jobs/job-1/deliveries/1/body"},
	} {
		if code, _, b := a.do(r.method, r.path, `{"jobIds":["job-1"],"after":0}`); code != http.StatusUnauthorized {
			t.Errorf("%s %s without the token: got %d %s, want 401", r.method, r.path, code, b)
		}
	}
}
