package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// runCLI runs a command with exactly env, for what s.cli cannot vary.
func runCLI(ctx context.Context, env map[string]string, stdin string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{"nouvelhook"}, args...), mapEnv(env), strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// mustDeliver posts a correctly signed webhook for jobID and wants a 200.
func (s *testService) mustDeliver(jobID, status string) {
	s.t.Helper()
	body := event(jobID, status)
	if code, ans := s.deliver(body, sign(testSecret, body)); code != http.StatusOK {
		s.t.Fatalf("deliver %s: got %d %s, want 200", jobID, code, ans)
	}
}

// wantCode checks err's exit status as main would compute it.
func wantCode(t *testing.T, err error, want int) {
	t.Helper()
	if got := exitCode(err, &bytes.Buffer{}); got != want {
		t.Fatalf("exit status: got %d (err %v), want %d", got, err, want)
	}
}

func jobIDs(jobs []store.Job) string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.JobID)
	}
	return strings.Join(ids, ",")
}

func listJSON(t *testing.T, s *testService, args ...string) []store.Job {
	t.Helper()
	out, errOut, err := s.cli(append([]string{"jobs", "list", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("jobs list %v: %v\n%s", args, err, errOut)
	}
	var ans struct {
		Jobs []store.Job `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatalf("jobs list --json: %q is not {\"jobs\":[…]}: %v", out, err)
	}
	return ans.Jobs
}

func TestCLIJobsList(t *testing.T) {
	s := startService(t, nil)
	s.mustDeliver("job-a", "completed")
	s.mustDeliver("job-b", "failed")
	s.mustDeliver("job-c", "partial")

	tests := []struct {
		args []string
		want string
	}{
		{nil, "job-c,job-b,job-a"},
		{[]string{"--status", "failed"}, "job-b"},
		{[]string{"--status", "completed,partial"}, "job-c,job-a"},
		{[]string{"--limit", "2"}, "job-c,job-b"},
		{[]string{"--since", "2000-01-01T00:00:00Z"}, "job-c,job-b,job-a"},
		{[]string{"--since", "2200-01-01T00:00:00Z"}, ""},
	}
	for _, tt := range tests {
		if got := jobIDs(listJSON(t, s, tt.args...)); got != tt.want {
			t.Errorf("jobs list --json %v: got [%s], want [%s]", tt.args, got, tt.want)
		}
	}

	out, _, err := s.cli("jobs", "list")
	if err != nil {
		t.Fatalf("jobs list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^JOB ID +STATUS +SOURCE +PROJECTS +DELIVERIES +UPDATED$`).MatchString(lines[0]) {
		t.Fatalf("jobs list: got %q, want a header and 3 rows", out)
	}
	if !regexp.MustCompile(`^job-c +partial +webhook +1/1 +1 +\d{4}-`).MatchString(lines[1]) || !strings.HasPrefix(lines[3], "job-a ") {
		t.Errorf("jobs list rows: got %q, want job-c first and job-a last", lines[1:])
	}
}

func TestCLIJobsListFollowsCursor(t *testing.T) {
	s := startService(t, nil)
	for _, id := range []string{"job-1", "job-2", "job-3", "job-4"} {
		s.mustDeliver(id, "completed")
	}
	c, err := newAdminClient(mapEnv(map[string]string{"NOUVELHOOK_ADMIN_URL": s.Admin}))
	if err != nil {
		t.Fatal(err)
	}
	jobs, next, err := c.listJobs(context.Background(), url.Values{}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(jobs), "job-4,job-3,job-2"; got != want || next == "" {
		t.Errorf("3 jobs in pages of 2: got [%s] next %q, want [%s] and a next cursor", got, next, want)
	}
	jobs, next, err = c.listJobs(context.Background(), url.Values{"cursor": {next}}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(jobs), "job-1"; got != want || next != "" {
		t.Errorf("from the cursor: got [%s] next %q, want [%s] and no next cursor", got, next, want)
	}
}

// jobs list says when there are more jobs than it shows, and how to see
// them: a "more:" line on stderr after the table, nextCursor in the JSON.
func TestCLIJobsListPaging(t *testing.T) {
	s := startService(t, nil)
	for _, id := range []string{"job-1", "job-2", "job-3", "job-4", "job-5"} {
		s.mustDeliver(id, "completed")
	}

	// The table, following each "more:" hint as a user would.
	args := []string{"jobs", "list", "--limit", "2"}
	var pages []string
	for range 5 {
		out, errOut, err := s.cli(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			ids = append(ids, strings.Fields(line)[0])
		}
		pages = append(pages, strings.Join(ids, ","))
		if errOut == "" {
			break
		}
		hint, ok := strings.CutPrefix(errOut, "more: nouvelhook jobs list --limit 2 --cursor ")
		if !ok || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("%v: got stderr %q, want one line \"more: nouvelhook jobs list --limit 2 --cursor C\"", args, errOut)
		}
		args = []string{"jobs", "list", "--limit", "2", "--cursor", strings.TrimSpace(hint)}
	}
	if got, want := strings.Join(pages, " | "), "job-5,job-4 | job-3,job-2 | job-1"; got != want {
		t.Errorf("jobs list pages: got %s, want %s", got, want)
	}

	// The JSON, following nextCursor; it is there, empty, on the last page.
	args = []string{"jobs", "list", "--json", "--limit", "3", "--status", "completed"}
	pages = nil
	for range 5 {
		out, _, err := s.cli(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var ans map[string]json.RawMessage
		var page struct {
			Jobs       []store.Job `json:"jobs"`
			NextCursor *string     `json:"nextCursor"`
		}
		if json.Unmarshal([]byte(out), &ans) != nil || json.Unmarshal([]byte(out), &page) != nil ||
			len(ans) != 2 || page.NextCursor == nil {
			t.Fatalf("%v: got %s, want {\"jobs\":[…],\"nextCursor\":\"…\"}", args, out)
		}
		pages = append(pages, jobIDs(page.Jobs))
		if *page.NextCursor == "" {
			break
		}
		args = []string{"jobs", "list", "--json", "--limit", "3", "--status", "completed", "--cursor", *page.NextCursor}
	}
	if got, want := strings.Join(pages, " | "), "job-5,job-4,job-3 | job-2,job-1"; got != want {
		t.Errorf("jobs list --json pages: got %s, want %s", got, want)
	}

	// All of them fit: no hint.
	if _, errOut, err := s.cli("jobs", "list"); err != nil || errOut != "" {
		t.Errorf("jobs list of 5 jobs: got stderr %q, %v; want no hint", errOut, err)
	}
	if got := nextListCommand("failed,partial", "2026-01-02T00:00:00Z", 50, "17"); got !=
		"nouvelhook jobs list --status failed,partial --since 2026-01-02T00:00:00Z --cursor 17" {
		t.Errorf("nextListCommand: got %q", got)
	}
}

func TestCLIJobsListBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--status", "done"}, {"--since", "yesterday"}, {"--limit", "0"}, {"extra"}, {"--nope"},
	} {
		_, _, err := runCLI(context.Background(), nil, "", append([]string{"jobs", "list"}, args...)...)
		wantCode(t, err, 2)
	}
}

func TestCLIJobsShow(t *testing.T) {
	s := startService(t, nil)
	s.mustDeliver("job-s", "completed")
	s.mustDeliver("job-s", "completed") // the same bytes again: one delivery, two copies
	s.mustDeliver("job-s", "failed")    // a report that disagrees: kept, marked a duplicate

	out, _, err := s.cli("jobs", "show", "job-s")
	if err != nil {
		t.Fatalf("jobs show: %v", err)
	}
	for _, want := range []string{"Job ID:", "job-s", "Webhook deliveries:", "\nDeliveries:\n", "RECEIVED", "COPIES",
		"https://cdn.example/job-s.mp4"} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs show: got\n%s\nwant it to contain %q", out, want)
		}
	}
	rows := regexp.MustCompile(`(?m)^  \d{4}-\S+ +1 +(true|false) +(\w+) +(\d+)$`).FindAllStringSubmatch(out, -1)
	var got []string
	for _, r := range rows {
		got = append(got, r[1]+" "+r[2]+" "+r[3])
	}
	if want := []string{"false completed 2", "true failed 1"}; !slices.Equal(got, want) {
		t.Errorf("jobs show: got delivery rows (duplicate status copies) %q, want %q\n%s", got, want, out)
	}

	out, _, err = s.cli("jobs", "show", "job-s", "--json") // the flag after the id
	if err != nil {
		t.Fatalf("jobs show --json: %v", err)
	}
	var j store.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("jobs show --json: %q: %v", out, err)
	}
	if j.JobID != "job-s" || j.Status != "completed" || len(j.Deliveries) != 2 || j.Deliveries[0].Copies != 2 ||
		!j.Deliveries[1].Duplicate || j.DeliveriesTotal != 3 {
		t.Errorf("jobs show --json: got %+v, want job-s completed with 2 deliveries (2 copies, then a duplicate), 3 in all", j)
	}

	// A long-poll's answer is the same job, deliveries included, as a
	// plain GET's: jobs wait and jobs show read the same thing.
	var plain, waited map[string]any
	s.adminGet("/v1/jobs/job-s", &plain)
	s.adminGet("/v1/jobs/job-s?wait=5s", &waited)
	if !reflect.DeepEqual(plain, waited) || waited["deliveries"] == nil {
		t.Errorf("GET ?wait=5s: got %v, want the plain GET's answer, deliveries included: %v", waited, plain)
	}
	if out, _, err := s.cli("jobs", "wait", "job-s"); err != nil || out != "job-s completed (webhook)\n" {
		t.Errorf("jobs wait job-s: got %q, %v", out, err)
	}

	_, _, err = s.cli("jobs", "show", "--json", "nope")
	if err == nil || err.Error() != "job nope not found" {
		t.Errorf("jobs show nope: got %v, want job nope not found", err)
	}
	wantCode(t, err, 1)
}

// When the service lists only the last deliveries of a job, jobs show says
// how many it received in all.
func TestCLIJobsShowManyDeliveries(t *testing.T) {
	s := startService(t, nil)
	const n = store.MaxDeliveries + 5
	for i := range n {
		body := []byte(strings.Replace(string(event("job-many", "completed")), `"title":"Ad"`, fmt.Sprintf(`"title":"Ad %d"`, i), 1))
		if code, ans := s.deliver(body, sign(testSecret, body)); code != http.StatusOK {
			t.Fatalf("deliver %d: got %d %s", i, code, ans)
		}
	}
	out, _, err := s.cli("jobs", "show", "job-many")
	if err != nil {
		t.Fatalf("jobs show: %v", err)
	}
	title := fmt.Sprintf("\nDeliveries (the last %d listed; %d received in all):\n", store.MaxDeliveries, n)
	rows := regexp.MustCompile(`(?m)^  \d{4}-\S+ +1 +(true|false) +completed +1$`).FindAllString(out, -1)
	if !strings.Contains(out, title) || len(rows) != store.MaxDeliveries {
		t.Errorf("jobs show of %d deliveries: got %d rows and\n%s\nwant %d rows under %q", n, len(rows), out, store.MaxDeliveries, title)
	}
}

// firstMiss proxies to the admin API, but answers the first request for a
// job with a 404, as the service would before the job reaches it. started
// closes then.
func firstMiss(t *testing.T, admin string) (proxyURL string, started <-chan struct{}) {
	target, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ch := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if !first {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"job not found"}`))
		close(ch)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func TestCLIJobsWait(t *testing.T) {
	s := startService(t, nil)

	t.Run("completed after a 404", func(t *testing.T) {
		proxy, started := firstMiss(t, s.Admin)
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, _, err := runCLI(context.Background(), map[string]string{"NOUVELHOOK_ADMIN_URL": proxy}, "",
				"jobs", "wait", "job-w", "--timeout", "30s")
			done <- result{out, err}
		}()
		var r result
		select {
		case <-started:
			s.mustDeliver("job-w", "completed")
			r = <-done
		case r = <-done:
			t.Fatalf("jobs wait returned before asking for the job: %q, %v", r.out, r.err)
		}
		if r.err != nil || r.out != "job-w completed (webhook)\n" {
			t.Errorf("jobs wait: got %q, %v; want \"job-w completed (webhook)\\n\", nil", r.out, r.err)
		}
	})

	t.Run("failed", func(t *testing.T) {
		s.mustDeliver("job-f", "failed")
		out, _, err := s.cli("jobs", "wait", "job-f")
		if out != "job-f failed (webhook)\n" || err == nil || !strings.Contains(err.Error(), "failed") {
			t.Errorf("jobs wait job-f: got %q, %v; want the status line and an error naming failed", out, err)
		}
		wantCode(t, err, 1)
	})

	t.Run("timeout", func(t *testing.T) {
		_, _, err := s.cli("jobs", "wait", "--timeout", "50ms", "job-never")
		if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "job-never") {
			t.Errorf("jobs wait --timeout 50ms: got %v, want a timeout naming job-never", err)
		}
		wantCode(t, err, 2)
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := runCLI(ctx, map[string]string{"NOUVELHOOK_ADMIN_URL": s.Admin}, "", "jobs", "wait", "job-never")
		wantCode(t, err, 2)
	})

	t.Run("unreachable", func(t *testing.T) {
		_, _, err := runCLI(context.Background(), map[string]string{"NOUVELHOOK_ADMIN_URL": closedURL(t)}, "",
			"jobs", "wait", "job-never")
		wantCode(t, err, 2)
	})
}

// closedURL is a loopback URL nothing listens on.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestCLIUnreachable(t *testing.T) {
	u := closedURL(t)
	_, _, err := runCLI(context.Background(), map[string]string{"NOUVELHOOK_ADMIN_URL": u}, "", "jobs", "list")
	if want := "cannot reach the admin API at " + u + " (is nouvelhook serve running?)"; err == nil || err.Error() != want {
		t.Errorf("jobs list against nothing: got %v, want %q", err, want)
	}
	// A service never reached is an error at once, not a restart to wait out.
	_, _, err = runCLI(context.Background(), map[string]string{"NOUVELHOOK_ADMIN_URL": u}, "", "jobs", "wait", "x", "--timeout", "30s")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the admin API") {
		t.Errorf("jobs wait against nothing: got %v, want cannot reach", err)
	}
}

func TestCLITrack(t *testing.T) {
	s := startService(t, nil)
	out, _, err := s.cli("track", "job-t")
	if err != nil || out != "job-t tracked\n" {
		t.Fatalf("track job-t: got %q, %v; want \"job-t tracked\\n\"", out, err)
	}
	out, _, err = s.cli("track", "job-t")
	if err != nil || !regexp.MustCompile(`^job-t already known \(status \w+\)\n$`).MatchString(out) {
		t.Fatalf("track job-t again: got %q, %v; want already known", out, err)
	}

	_, _, err = s.cli("track", "job-ok", "bad id!")
	if err == nil || !strings.Contains(err.Error(), `"bad id!"`) {
		t.Errorf("track with a bad id: got %v, want an error naming it", err)
	}
	wantCode(t, err, 2)
	if code := s.adminGet("/v1/jobs/job-ok", nil); code != http.StatusNotFound {
		t.Errorf("after a refused track, GET job-ok: got %d, want 404", code)
	}

	_, _, err = s.cli("track")
	wantCode(t, err, 2)
}

// With no NOUVEL_API_KEY nothing will poll a tracked job: track says so on
// stderr, once however many jobs it tracks, and still tracks them.
func TestCLITrackWarnsWithoutReconciler(t *testing.T) {
	wantWarning := regexp.MustCompile(`^nouvelhook: warning: .*NOUVEL_API_KEY.*\n$`)
	s := startService(t, nil)
	out, errOut, err := s.cli("track", "job-w1", "job-w2")
	if err != nil || out != "job-w1 tracked\njob-w2 tracked\n" || !wantWarning.MatchString(errOut) {
		t.Errorf("track without an API key: got %q, stderr %q, %v; want both tracked and one warning line naming NOUVEL_API_KEY",
			out, errOut, err)
	}
	_, errOut, err = s.cli("track", "job-w1")
	if err != nil || !wantWarning.MatchString(errOut) {
		t.Errorf("track a known job without an API key: got stderr %q, %v; want the warning", errOut, err)
	}

	s, _ = startWithNouvel(t, "", 0)
	out, errOut, err = s.cli("track", "job-p1")
	if err != nil || out != "job-p1 tracked\n" || errOut != "" {
		t.Errorf("track with an API key: got %q, stderr %q, %v; want tracked and no warning", out, errOut, err)
	}
}

func TestCLISign(t *testing.T) {
	body := []byte("{\"jobId\": \"x\",\n \"status\":\"completed\"}\n")
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sign(testSecret, body) + "\n"
	envSecret := map[string]string{"NOUVEL_WEBHOOK_SECRET": testSecret + ",older"}
	tests := []struct {
		name  string
		env   map[string]string
		stdin string
		args  []string
	}{
		{"stdin", envSecret, string(body), nil},
		{"dash", envSecret, string(body), []string{"-"}},
		{"file", envSecret, "", []string{file}},
		{"flag after file", map[string]string{"NOUVEL_WEBHOOK_SECRET": "other"}, "", []string{file, "--secret", testSecret}},
	}
	for _, tt := range tests {
		out, _, err := runCLI(context.Background(), tt.env, tt.stdin, append([]string{"sign"}, tt.args...)...)
		if err != nil || out != want {
			t.Errorf("sign %s: got %q, %v; want %q", tt.name, out, err, want)
		}
	}

	_, _, err := runCLI(context.Background(), nil, string(body), "sign")
	if err == nil || !strings.Contains(err.Error(), "NOUVEL_WEBHOOK_SECRET") {
		t.Errorf("sign without a secret: got %v, want an error naming NOUVEL_WEBHOOK_SECRET", err)
	}
	_, _, err = runCLI(context.Background(), envSecret, "", "sign", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("sign a missing file: got %v, want an error naming it", err)
	}
}

func TestCLIVersion(t *testing.T) {
	out, _, err := runCLI(context.Background(), nil, "", "version")
	want := `^nouvelhook ` + regexp.QuoteMeta(version) + ` \(commit \S+, ` + regexp.QuoteMeta(runtime.Version()) +
		`, ` + runtime.GOOS + `/` + runtime.GOARCH + `\)\n$`
	if err != nil || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("version: got %q, %v; want to match %s", out, err, want)
	}
	if got := buildCommit("abc1234"); got != "abc1234" {
		t.Errorf("buildCommit(linked): got %q, want abc1234", got)
	}
}

func TestCLIAdminToken(t *testing.T) {
	const token = "admin-token-123"
	s := startService(t, map[string]string{"NOUVELHOOK_ADMIN_TOKEN": token})
	s.mustDeliver("job-a", "completed")
	if out, _, err := s.cli("jobs", "list"); err != nil || !strings.Contains(out, "job-a") {
		t.Fatalf("jobs list with the token: got %q, %v", out, err)
	}
	for _, env := range []map[string]string{
		{"NOUVELHOOK_ADMIN_URL": s.Admin},
		{"NOUVELHOOK_ADMIN_URL": s.Admin, "NOUVELHOOK_ADMIN_TOKEN": "wrong-token"},
	} {
		_, _, err := runCLI(context.Background(), env, "", "jobs", "show", "job-a")
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "NOUVELHOOK_ADMIN_TOKEN") {
			t.Errorf("jobs show with token %q: got %v, want a 401 naming NOUVELHOOK_ADMIN_TOKEN", env["NOUVELHOOK_ADMIN_TOKEN"], err)
		}
		if err != nil && (strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "wrong-token")) {
			t.Errorf("error %q holds a token", err)
		}
	}
}

func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{
		{"jobs", "--help"}, {"jobs", "list", "--help"}, {"jobs", "show", "-h"}, {"jobs", "wait", "--help"},
		{"track", "--help"}, {"sign", "--help"}, {"version", "--help"}, {"jobs", "show", "job-x", "--help"},
	} {
		_, errOut, err := runCLI(context.Background(), nil, "", args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: got %v, want flag.ErrHelp", args, err)
		}
		wantCode(t, err, 0)
		if !strings.HasPrefix(errOut, "Usage: nouvelhook "+args[0]) {
			t.Errorf("%v: got usage %q, want it to start with Usage: nouvelhook %s", args, errOut, args[0])
		}
	}
}

func TestCLIJobsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"jobs"}, {"jobs", "frob"}, {"jobs", "show"}, {"jobs", "show", "a", "b"}, {"jobs", "show", "bad/id"},
		{"jobs", "wait", "x", "--timeout", "-1s"}, {"sign", "a", "b"}, {"version", "extra"},
	} {
		_, _, err := runCLI(context.Background(), nil, "", args...)
		wantCode(t, err, 2)
	}
}

// jobs wait rides out a restart of the service it waits on: once the
// service has answered, a dropped connection and 503s (as a proxy gives
// while it restarts) are waited out rather than ending the wait.
func TestCLIWaitRidesOutServiceRestart(t *testing.T) {
	var target atomic.Pointer[string]
	var requests atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := requests.Add(1); {
		case n == 1:
			http.Error(w, `{"error":"job not found"}`, http.StatusNotFound)
		case n == 2: // the connection drops mid-answer, as when the service is killed
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case target.Load() == nil:
			http.Error(w, `{"error":"restarting"}`, http.StatusServiceUnavailable)
		default:
			u, _ := url.Parse(*target.Load())
			httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
		}
	}))
	t.Cleanup(proxy.Close)

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"nouvelhook", "jobs", "wait", "ride-out", "--timeout", "2m"},
			mapEnv(map[string]string{"NOUVELHOOK_ADMIN_URL": proxy.URL}), nil, &stdout, &stderr)
		done <- result{stdout.String(), err}
	}()
	for requests.Load() < 4 { // the 404, the dropped connection, then at least one 503
		select {
		case r := <-done:
			t.Fatalf("jobs wait ended during the restart: %q, %v", r.out, r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s := startService(t, nil)
	target.Store(&s.Admin)
	body := event("ride-out", "completed")
	if code, _ := s.deliver(body, sign(testSecret, body)); code != 200 {
		t.Fatalf("deliver: got %d", code)
	}
	r := <-done
	if r.err != nil || !strings.Contains(r.out, "ride-out completed") {
		t.Fatalf("jobs wait: got %q, %v; want completed", r.out, r.err)
	}
}

// A service that answers a long-poll at once (as the admin server does while
// it shuts down) must not make jobs wait spin.
func TestCLIWaitDoesNotSpinOnEarlyAnswers(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1)%2 == 0 {
			http.Error(w, `{"error":"job not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jobId":"spin","status":"running"}`))
	}))
	t.Cleanup(srv.Close)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"nouvelhook", "jobs", "wait", "spin", "--timeout", "2s"},
		mapEnv(map[string]string{"NOUVELHOOK_ADMIN_URL": srv.URL}), nil, &stdout, &stderr)
	if err == nil {
		t.Fatalf("jobs wait: got nil error, want a timeout")
	}
	if n := requests.Load(); n > 10 {
		t.Errorf("got %d requests in 2s, want at most 10: jobs wait spins on answers that come back early", n)
	}
}
