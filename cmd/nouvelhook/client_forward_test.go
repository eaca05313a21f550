package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// testApp is the app forwards go to: it answers every forward with the
// status set last, and keeps the job id of each it answered 2xx.
type testApp struct {
	*httptest.Server
	status atomic.Int32

	mu        sync.Mutex
	delivered []string
}

func startApp(t *testing.T, status int) *testApp {
	t.Helper()
	a := &testApp{}
	a.status.Store(int32(status))
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			JobID string `json:"jobId"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		code := int(a.status.Load())
		if code/100 == 2 {
			a.mu.Lock()
			a.delivered = append(a.delivered, body.JobID)
			a.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(a.Close)
	return a
}

// got returns the job ids the app took, in order.
func (a *testApp) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.delivered)
}

// startForwarding runs serve forwarding to app, one quick retry after the
// first attempt.
func startForwarding(t *testing.T, app *testApp) *testService {
	t.Helper()
	return startService(t, map[string]string{
		"NOUVELHOOK_FORWARD_URL":      app.URL + "/hooks/nouvel",
		"NOUVELHOOK_FORWARD_SCHEDULE": "50ms",
		"NOUVELHOOK_FORWARD_TIMEOUT":  "5s",
	})
}

// forwardsJSON runs forward list --json with args and returns the forwards.
func forwardsJSON(t *testing.T, s *testService, args ...string) []store.QueuedForward {
	t.Helper()
	out, errOut, err := s.cli(append([]string{"forward", "list", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("forward list --json %v: %v\n%s", args, err, errOut)
	}
	var ans struct {
		Forwards   []store.QueuedForward `json:"forwards"`
		NextCursor *string               `json:"nextCursor"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.Forwards == nil || ans.NextCursor == nil {
		t.Fatalf("forward list --json: %q is not {\"forwards\":[…],\"nextCursor\":\"…\"}: %v", out, err)
	}
	return ans.Forwards
}

// forwardStates returns "job:state" for each forward, in order.
func forwardStates(fs []store.QueuedForward) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.JobID+":"+string(f.State))
	}
	return strings.Join(out, ",")
}

// waitForwards waits until forward list --json, in the queue's order, reads
// want.
func waitForwards(t *testing.T, s *testService, want string) []store.QueuedForward {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fs := forwardsJSON(t, s)
		if forwardStates(fs) == want {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("forwards: got %s, want %s within 20s", forwardStates(fs), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestForwardCLIListRetryReplay(t *testing.T) {
	app := startApp(t, http.StatusInternalServerError)
	s := startForwarding(t, app)
	s.mustDeliver("job-a", "completed")
	s.mustDeliver("job-b", "failed")

	// Two attempts each, both 500: failed, kept until retried.
	fs := waitForwards(t, s, "job-a:failed,job-b:failed")
	for _, f := range fs {
		if f.Attempts != 2 || f.LastStatus != 500 || f.LastError == "" || f.NextAttemptAt != nil {
			t.Errorf("failed forward %s: %+v, want 2 attempts, last status 500 with its error, no next attempt", f.JobID, f.Forward)
		}
	}
	out, _, err := s.cli("forward", "list")
	if err != nil {
		t.Fatalf("forward list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^JOB ID +SEQ +STATE +ATTEMPTS +LAST STATUS +NEXT ATTEMPT +DELIVERED +LAST ERROR$`).MatchString(lines[0]) {
		t.Fatalf("forward list: got %q, want a header and 2 rows", out)
	}
	if !regexp.MustCompile(`^job-a +1 +failed +2 +500 +- +- +\S`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^job-b +2 +failed +2 +500 +- +- +\S`).MatchString(lines[2]) {
		t.Errorf("forward list rows: got %q, want job-a and job-b failed after 2 attempts with 500", lines[1:])
	}
	if got := forwardStates(forwardsJSON(t, s, "--state", "delivered,pending")); got != "" {
		t.Errorf("forward list --state delivered,pending: got %s, want none", got)
	}

	// retry sends one again, now that the app is back.
	app.status.Store(http.StatusNoContent)
	if out, errOut, err := s.cli("forward", "retry", "job-a"); err != nil || out != "1 forward queued\n" {
		t.Fatalf("forward retry job-a: got %q, %v\n%s", out, err, errOut)
	}
	fs = waitForwards(t, s, "job-b:failed,job-a:delivered")
	if a := fs[1]; a.Attempts != 1 || a.LastStatus != 204 || a.DeliveredAt == nil || a.LastError != "" {
		t.Errorf("retried forward: %+v, want delivered at its first attempt since the retry, with 204", a.Forward)
	}
	if got := app.got(); !slices.Equal(got, []string{"job-a"}) {
		t.Errorf("the app took %v, want job-a once", got)
	}
	if out, _, err := s.cli("jobs", "show", "job-a"); err != nil || !regexp.MustCompile(`(?m)^Forward: +delivered, 1 attempt, last status 204, delivered \d{4}-`).MatchString(out) {
		t.Errorf("jobs show job-a: got %q, %v; want a Forward line saying delivered", out, err)
	}

	// A page shorter than the queue says how to see the rest.
	out, errOut, err := s.cli("forward", "list", "--limit", "1", "--state", "failed,delivered")
	if err != nil {
		t.Fatalf("forward list --limit 1: %v", err)
	}
	hint, ok := strings.CutPrefix(errOut, "more: nouvelhook forward list --state failed,delivered --limit 1 --cursor ")
	if !ok || strings.Count(out, "\n") != 2 || !strings.Contains(out, "job-b") {
		t.Fatalf("forward list --limit 1: got %q and stderr %q, want job-b and a more: hint", out, errOut)
	}
	if got := forwardStates(forwardsJSON(t, s, "--state", "failed,delivered", "--cursor", strings.TrimSpace(hint))); got != "job-a:delivered" {
		t.Errorf("forward list from the hint's cursor: got %s, want job-a:delivered", got)
	}

	// replay sends every job after a seq, whatever its state.
	if out, errOut, err := s.cli("forward", "replay", "--after", "1"); err != nil || out != "1 forward queued\n" {
		t.Fatalf("forward replay --after 1: got %q, %v\n%s", out, err, errOut)
	}
	waitForwards(t, s, "job-a:delivered,job-b:delivered")
	if out, errOut, err := s.cli("forward", "replay", "--after=0"); err != nil || out != "2 forwards queued\n" {
		t.Fatalf("forward replay --after=0: got %q, %v\n%s", out, err, errOut)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(app.got()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := app.got(); len(got) != 4 || got[1] != "job-b" {
		t.Errorf("the app took %v, want job-a, job-b, then both again", got)
	}

	// Refusals: the service's are one line and exit 1, the command line's
	// exit 2 before any request.
	_, errOut, err = s.cli("forward", "retry", "job-a", "job-nope")
	if err == nil || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "\n") {
		t.Errorf("forward retry of an unknown job: got %v, want one line with the 404", err)
	}
	wantCode(t, err, 1)
	for _, args := range [][]string{
		{"forward", "retry"}, {"forward", "retry", "bad id"}, {"forward", "list", "--state", "lost"},
		{"forward", "list", "--limit", "0"}, {"forward", "list", "extra"}, {"forward", "replay"},
		{"forward", "replay", "--after", "-1"}, {"forward", "replay", "--after", "x"},
		{"forward", "replay", "--after", "1", "extra"}, {"forward"}, {"forward", "resume"},
	} {
		_, errOut, err := s.cli(args...)
		wantCode(t, err, 2)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: got a multi-line error %q", args, err)
		}
		if slices.Equal(args, []string{"forward", "retry"}) && !strings.HasPrefix(errOut, "Usage: nouvelhook forward retry JOBID...") {
			t.Errorf("forward retry without ids: got stderr %q, want its usage", errOut)
		}
	}
}

// A 410 pauses all forwarding; forward retry of the job ends the pause.
func TestForwardCLIRetryEndsAPause(t *testing.T) {
	app := startApp(t, http.StatusGone)
	s := startForwarding(t, app)
	s.mustDeliver("job-gone", "completed")
	waitForwards(t, s, "job-gone:paused")
	var ready map[string]any
	if code := s.adminGet("/readyz", &ready); code != http.StatusServiceUnavailable ||
		!strings.HasPrefix(fmt.Sprint(ready["reason"]), "forwarding is paused: ") {
		t.Errorf("admin readyz while paused: got %d %v, want 503 with the forwarding pause as reason", code, ready)
	}
	s.mustDeliver("job-held", "completed") // queued, not sent while paused
	if got := forwardStates(forwardsJSON(t, s)); got != "job-gone:paused,job-held:pending" {
		t.Fatalf("forwards while paused: got %s, want job-gone paused and job-held pending", got)
	}

	app.status.Store(http.StatusOK)
	if out, errOut, err := s.cli("forward", "retry", "job-gone"); err != nil || out != "1 forward queued\n" {
		t.Fatalf("forward retry job-gone: got %q, %v\n%s", out, err, errOut)
	}
	waitForwards(t, s, "job-gone:delivered,job-held:delivered")
	ready = nil
	if code := s.adminGet("/readyz", &ready); code != http.StatusOK {
		t.Errorf("admin readyz after the retry: got %d %v, want 200", code, ready)
	}
}

func TestForwardCLIWhenForwardingIsOff(t *testing.T) {
	s := startService(t, nil)
	s.mustDeliver("job-a", "completed")
	for _, args := range [][]string{
		{"forward", "list"}, {"forward", "retry", "job-a"}, {"forward", "replay", "--after", "0"},
	} {
		_, _, err := s.cli(args...)
		wantCode(t, err, 1)
		if err == nil || !strings.HasSuffix(err.Error(), ": 409 forwarding is off: set NOUVELHOOK_FORWARD_URL") {
			t.Errorf("%v: got %v, want the service's 409 saying forwarding is off", args, err)
		}
	}
}

func TestForwardCLIHelp(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"forward", "--help"}, "Usage: nouvelhook forward COMMAND"},
		{[]string{"forward", "help"}, "Usage: nouvelhook forward COMMAND"},
		{[]string{"forward", "list", "--help"}, "Usage: nouvelhook forward list [--state S[,S]]"},
		{[]string{"forward", "retry", "-h"}, "Usage: nouvelhook forward retry JOBID..."},
		{[]string{"forward", "retry", "job-x", "--help"}, "Usage: nouvelhook forward retry JOBID..."},
		{[]string{"forward", "replay", "--help"}, "Usage: nouvelhook forward replay --after SEQ"},
	} {
		_, errOut, err := runCLI(context.Background(), nil, "", tt.args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: got %v, want flag.ErrHelp", tt.args, err)
		}
		wantCode(t, err, 0)
		if !strings.HasPrefix(errOut, tt.want) {
			t.Errorf("%v: got usage %q, want it to start with %q", tt.args, errOut, tt.want)
		}
	}
	out, _, _ := runCLI(context.Background(), nil, "", "--help")
	if !strings.Contains(out, "nouvelhook forward retry JOBID...") {
		t.Errorf("nouvelhook --help: got %q, want the forward commands listed", out)
	}
}
