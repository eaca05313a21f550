package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// maxBackoff and sweepEvery mirror the reconciler's unexported constants:
// the cap on failure backoff, and how often expiry and missed-webhook checks
// run.
const (
	maxBackoff = 5 * time.Minute
	sweepEvery = 5 * time.Second
)

// requestsFor returns the requests that polled jobID, oldest first.
func requestsFor(reqs []nouveltest.Request, jobID string) []nouveltest.Request {
	var out []nouveltest.Request
	for _, r := range reqs {
		if r.JobID == jobID {
			out = append(out, r)
		}
	}
	return out
}

// gapsOf returns the times between consecutive requests.
func gapsOf(reqs []nouveltest.Request) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(reqs); i++ {
		out = append(out, reqs[i].Time.Sub(reqs[i-1].Time))
	}
	return out
}

// offsets returns the requests' times as offsets from simStart, for messages.
func offsets(reqs []nouveltest.Request) []time.Duration {
	out := make([]time.Duration, len(reqs))
	for i, r := range reqs {
		out[i] = r.Time.Sub(simStart)
	}
	return out
}

// statuses returns the statuses the stand-in answered.
func statuses(reqs []nouveltest.Request) []int {
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = r.Status
	}
	return out
}

// sortedRequests returns every request the stand-in received, by time.
func sortedRequests(f *fixture) []nouveltest.Request {
	reqs := f.Nouvel.Requests()
	slices.SortStableFunc(reqs, func(a, b nouveltest.Request) int { return a.Time.Compare(b.Time) })
	return reqs
}

// runPhase runs a new reconciler, made with the fixture's options, on the
// fixture's clock until simulated time reaches end, and closes it. A phase
// after another is a restart: only the store carries over.
func (f *fixture) runPhase(t *testing.T, end time.Time, watch func(now time.Time)) {
	t.Helper()
	c := f.Clock.Phase(end, watch)
	opts := f.opts
	opts.Clock = c
	rec := reconcile.New(opts)
	rec.Start()
	defer rec.Close()
	select {
	case <-c.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("simulated time did not reach the phase's end within 2 real minutes")
	}
}

// adminGet fetches url and returns the status and body.
func adminGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, body
}

// adminPost posts body as JSON to url and returns the status and body.
func adminPost(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", url, err)
	}
	return resp.StatusCode, out
}

func decode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// checkEnded fails unless the job log holds Nouvel's outcome for id and the
// stand-in was not polled after the job ended.
func checkEnded(t *testing.T, f *fixture, id string) store.Job {
	t.Helper()
	truth, ok := f.Nouvel.Job(id)
	if !ok {
		t.Fatalf("%s: the stand-in does not know the job", id)
	}
	j := f.job(t, id)
	if !j.Terminal || j.Status != truth.Outcome || j.TotalProjects != truth.TotalProjects ||
		j.CompletedProjects != truth.CompletedProjects || j.FailedProjects != truth.FailedProjects {
		t.Errorf("%s: got %s terminal=%v %d/%d/%d, want %s terminal %d/%d/%d", id, j.Status, j.Terminal,
			j.TotalProjects, j.CompletedProjects, j.FailedProjects,
			truth.Outcome, truth.TotalProjects, truth.CompletedProjects, truth.FailedProjects)
	}
	if truth.Polls != truth.PollsNeeded {
		t.Errorf("%s: the stand-in answered %d polls, want exactly the %d it needed", id, truth.Polls, truth.PollsNeeded)
	}
	return j
}

// worstMinute is the most requests in any window [t, t+60 s) that starts at
// a request, and where that window starts.
func worstMinute(reqs []nouveltest.Request) (worst int, at time.Duration) {
	for _, r := range reqs {
		n := 0
		for _, s := range reqs {
			if !s.Time.Before(r.Time) && s.Time.Before(r.Time.Add(time.Minute)) {
				n++
			}
		}
		if n > worst {
			worst, at = n, r.Time.Sub(simStart)
		}
	}
	return worst, at
}

// A budget that does not divide a minute must not let budget+1 requests
// into a window a few nanoseconds short of a minute.
func TestBudgetThatDoesNotDivideAMinute(t *testing.T) {
	t.Parallel()
	for _, budget := range []int{7, 13} {
		f := newFixture(t, 4*time.Minute, nil, func(o *reconcile.Options) { o.Budget = budget })
		ids := jobIDs(20)
		for _, id := range ids {
			f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 1 << 30})
		}
		f.track(t, ids...)
		f.runToEnd(t)
		if worst, at := worstMinute(sortedRequests(f)); worst > budget {
			t.Errorf("budget %d: got %d requests in the minute from %s", budget, worst, at)
		}
	}
}

func TestBudgetHoldsAcrossManyJobs(t *testing.T) {
	t.Parallel()
	const budget, jobs = 30, 40
	const length = 10 * time.Minute
	f := newFixture(t, length, nil, func(o *reconcile.Options) { o.Budget = budget })
	ids := jobIDs(jobs)
	for _, id := range ids {
		f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 1 << 30})
	}
	f.track(t, ids...)
	f.runToEnd(t)

	reqs := sortedRequests(f)
	if worst, worstAt := worstMinute(reqs); worst > budget {
		t.Errorf("got %d requests in the minute from %s, want at most the budget %d", worst, worstAt, budget)
	}

	if minimum := int(0.9 * budget * length.Minutes()); len(reqs) < minimum {
		t.Errorf("got %d requests in %s, want at least %d: the limiter should spend the budget when jobs wait",
			len(reqs), length, minimum)
	}

	if len(reqs) < jobs {
		t.Fatalf("got %d requests, want at least %d", len(reqs), jobs)
	}
	first := map[string]int{}
	for i, r := range reqs[:jobs] {
		if prev, seen := first[r.JobID]; seen {
			t.Errorf("job %s polled as request %d and again as request %d before every job was polled once",
				r.JobID, prev+1, i+1)
		}
		first[r.JobID] = i
	}

	// Oldest-due first makes a round robin: no job gets two polls more
	// than another.
	perJob := map[string]int{}
	for _, r := range reqs {
		perJob[r.JobID]++
	}
	lo, hi := len(reqs), 0
	for _, id := range ids {
		lo, hi = min(lo, perJob[id]), max(hi, perJob[id])
	}
	if hi-lo > 1 {
		t.Errorf("polls per job range from %d to %d, want within one of each other: %v", lo, hi, perJob)
	}

	status, body := adminGet(t, f.Admin.URL+"/v1/stats")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/stats: got %d %s, want 200", status, body)
	}
	var stats struct {
		Poller reconcile.Status `json:"poller"`
	}
	decode(t, body, &stats)
	now, lastMinute := f.Clock.Now(), 0
	for _, r := range reqs {
		if now.Sub(r.Time) < time.Minute {
			lastMinute++
		}
	}
	if stats.Poller.BudgetPerMinute != budget || !stats.Poller.Enabled {
		t.Errorf("stats poller: got budgetPerMinute %d enabled %v, want %d true",
			stats.Poller.BudgetPerMinute, stats.Poller.Enabled, budget)
	}
	if got := stats.Poller.RequestsLastMinute; got != lastMinute || got > budget {
		t.Errorf("stats poller: got requestsLastMinute %d, want %d (the stand-in's count), at most %d",
			got, lastMinute, budget)
	}
}

func TestPollGapsGrowToTwiceTheInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval time.Duration
		want     []time.Duration
	}{
		{10 * time.Second, []time.Duration{10 * time.Second, 15 * time.Second, 20 * time.Second, 20 * time.Second, 20 * time.Second}},
		{6 * time.Second, []time.Duration{6 * time.Second, 9 * time.Second, 12 * time.Second, 12 * time.Second, 12 * time.Second}},
	} {
		t.Run(tc.interval.String(), func(t *testing.T) {
			t.Parallel()
			// The first poll is one interval after tracking; the run ends
			// before the poll after the last wanted gap.
			length := tc.interval + tc.interval/2
			for _, g := range tc.want {
				length += g
			}
			f := newFixture(t, length, nil, func(o *reconcile.Options) { o.Interval = tc.interval })
			f.Nouvel.AddJob(nouveltest.JobSpec{ID: "job-gaps", Polls: 1000})
			f.track(t, "job-gaps")
			f.runToEnd(t)

			reqs := requestsFor(sortedRequests(f), "job-gaps")
			if len(reqs) == 0 || !reqs[0].Time.Equal(simStart.Add(tc.interval)) {
				t.Errorf("polls at %v after tracking, want the first at %s", offsets(reqs), tc.interval)
			}
			if got := gapsOf(reqs); !slices.Equal(got, tc.want) {
				t.Errorf("gaps between polls: got %v, want %v", got, tc.want)
			}
			if j := f.job(t, "job-gaps"); j.Status != store.StatusRunning || j.PollCount != len(reqs) {
				t.Errorf("job: got status %s pollCount %d, want running %d", j.Status, j.PollCount, len(reqs))
			}
		})
	}
}

func TestRetryAfterPausesAllPolling(t *testing.T) {
	t.Parallel()
	for _, retry := range []time.Duration{30 * time.Second, 90 * time.Second} {
		t.Run(retry.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, retry+2*time.Minute, nil, nil)
			ids := []string{"job-limited", "job-other"}
			for _, id := range ids {
				f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 3, Projects: 2})
			}
			f.Nouvel.InjectFault(nouveltest.Fault{Status: http.StatusTooManyRequests, RetryAfter: retry, JobID: ids[0]})
			f.track(t, ids...)
			f.runToEnd(t)

			reqs := sortedRequests(f)
			i := slices.IndexFunc(reqs, func(r nouveltest.Request) bool { return r.Status == http.StatusTooManyRequests })
			if i < 0 || i+1 >= len(reqs) {
				t.Fatalf("requests %v at %v: want a 429 followed by more requests", statuses(reqs), offsets(reqs))
			}
			if got := reqs[i+1].Time.Sub(reqs[i].Time); got < retry {
				t.Errorf("next request (job %s) came %s after the 429, want at least Retry-After %s",
					reqs[i+1].JobID, got, retry)
			}
			for _, id := range ids {
				checkEnded(t, f, id)
			}
		})
	}
}

func TestServerErrorsBackOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval time.Duration
		faults   int // 503 answers before the stand-in answers normally
		polls    int // polls the job needs once answered normally
		length   time.Duration
		wantEnd  bool
	}{
		{"three 503s then ends", 10 * time.Second, 3, 2, 3 * time.Minute, true},
		{"backoff capped at 5m", 3 * time.Minute, 3, 1, 16*time.Minute + 30*time.Second, true},
		{"still failing", 10 * time.Second, 1000, 2, 4 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.length, nil, func(o *reconcile.Options) { o.Interval = tc.interval })
			const id = "job-flaky"
			f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: tc.polls})
			f.Nouvel.InjectFault(nouveltest.Fault{Status: http.StatusServiceUnavailable, Count: tc.faults, JobID: id})
			f.track(t, id)
			f.runToEnd(t)

			reqs := requestsFor(sortedRequests(f), id)
			failed := min(tc.faults, len(reqs))
			if failed < 3 {
				t.Fatalf("got %d requests %v at %v in %s, want at least 3 failures: retries come too late",
					len(reqs), statuses(reqs), offsets(reqs), tc.length)
			}
			gaps := gapsOf(reqs)
			for k := 1; k <= failed && k <= len(gaps); k++ {
				if reqs[k-1].Status != http.StatusServiceUnavailable {
					t.Fatalf("request %d: got status %d, want 503", k, reqs[k-1].Status)
				}
				base := min(tc.interval<<(k-1), maxBackoff)
				if g := gaps[k-1]; g < base/2 || g > base {
					t.Errorf("gap after failure %d: got %s, want %s to %s (half to all of %s, capped at %s)",
						k, g, base/2, base, base, maxBackoff)
				}
				// Until the cap, a gap's least is the previous gap's most.
				if k >= 2 && tc.interval<<(k-1) <= maxBackoff && gaps[k-1] < gaps[k-2] {
					t.Errorf("gap after failure %d: got %s, want it at least the previous gap %s", k, gaps[k-1], gaps[k-2])
				}
			}

			j := f.job(t, id)
			if !tc.wantEnd {
				if j.Terminal || !strings.Contains(j.LastError, "503") || j.PollCount != len(reqs) {
					t.Errorf("job while failing: got terminal=%v lastError %q pollCount %d, want false, an error naming 503, %d",
						j.Terminal, j.LastError, j.PollCount, len(reqs))
				}
				return
			}
			if got, want := len(reqs), tc.faults+tc.polls; got != want {
				t.Errorf("got %d requests %v, want %d: %d failures then %d polls", got, statuses(reqs), want, tc.faults, tc.polls)
			}
			checkEnded(t, f, id)
			if j.LastError != "" || j.Source != store.SourcePoll {
				t.Errorf("job after recovering: got lastError %q source %s, want \"\" poll", j.LastError, j.Source)
			}
		})
	}
}

func TestLowRateLimitRemainingPausesPolling(t *testing.T) {
	t.Parallel()
	// Nouvel allows 10 a minute here, far under the budget of 30, so only
	// watching X-RateLimit-Remaining keeps polling clear of a 429.
	f := newFixture(t, 5*time.Minute, func(o *nouveltest.Options) { o.RateLimit = 10 },
		func(o *reconcile.Options) { o.Budget = 30 })
	ids := jobIDs(6)
	for _, id := range ids {
		f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 2})
	}
	f.track(t, ids...)
	f.runToEnd(t)

	reqs := sortedRequests(f)
	for _, r := range reqs {
		if r.Status == http.StatusTooManyRequests {
			t.Errorf("job %s got a 429 at %s: polling should pause while X-RateLimit-Remaining is low",
				r.JobID, r.Time.Sub(simStart))
		}
	}
	if got, want := len(reqs), 2*len(ids); got != want {
		t.Errorf("got %d requests, want %d", got, want)
	}
	for _, id := range ids {
		checkEnded(t, f, id)
	}
}

func TestAuthFailureStopsPolling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		word   string
	}{
		{http.StatusUnauthorized, "unauthorized"},
		{http.StatusForbidden, "forbidden"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 10*time.Minute, nil, nil)
			ids := jobIDs(3)
			for _, id := range ids {
				f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 2})
			}
			f.track(t, ids...)
			if status, body := adminGet(t, f.Admin.URL+"/readyz"); status != http.StatusOK {
				t.Fatalf("GET /readyz before any poll: got %d %s, want 200", status, body)
			}
			f.Nouvel.SetAuthStatus(tc.status)
			f.runToEnd(t)

			if reqs := f.Nouvel.Requests(); len(reqs) != 1 || reqs[0].Status != tc.status {
				t.Errorf("requests: got statuses %v, want exactly one, answered %d", statuses(reqs), tc.status)
			}
			err := f.Rec.Ready()
			if err == nil {
				t.Fatalf("Ready: got nil, want an error after a %d", tc.status)
			}
			msg := strings.ToLower(err.Error())
			if !strings.Contains(msg, tc.word) || !strings.Contains(msg, strconv.Itoa(tc.status)) {
				t.Errorf("Ready: got %q, want it to name %d %s", err, tc.status, tc.word)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("Ready: got %q, which contains the API key", err)
			}

			status, body := adminGet(t, f.Admin.URL+"/readyz")
			var ready struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			decode(t, body, &ready)
			if status != http.StatusServiceUnavailable || ready.Ready || !strings.Contains(ready.Reason, "reconciler") ||
				!strings.Contains(strings.ToLower(ready.Reason), tc.word) {
				t.Errorf("GET /readyz: got %d %s, want 503 with a reason naming the reconciler and %s", status, body, tc.word)
			}
			if bytes.Contains(body, []byte(testKey)) {
				t.Errorf("GET /readyz: got %s, which contains the API key", body)
			}

			status, body = adminGet(t, f.Admin.URL+"/v1/stats")
			var stats struct {
				Poller reconcile.Status `json:"poller"`
			}
			decode(t, body, &stats)
			if status != http.StatusOK || stats.Poller.Stopped == "" || bytes.Contains(body, []byte(testKey)) {
				t.Errorf("GET /v1/stats: got %d poller.stopped %q, want 200 and a reason without the key", status, stats.Poller.Stopped)
			}
			for _, id := range ids {
				if j := f.job(t, id); j.Terminal || j.PollCount != 0 {
					t.Errorf("%s: got terminal=%v pollCount %d, want an untouched job", id, j.Terminal, j.PollCount)
				}
			}
		})
	}
}

func TestNotFoundAfterThree404sInARow(t *testing.T) {
	t.Parallel()
	pass := nouveltest.Fault{} // answered normally: breaks a run of 404s
	for _, tc := range []struct {
		name         string
		known        bool
		faults       []nouveltest.Fault
		wantStatus   store.Status
		wantStatuses []int
	}{
		{name: "unknown job", wantStatus: store.StatusNotFound, wantStatuses: []int{404, 404, 404}},
		{
			name: "404s not in a row", known: true,
			faults: []nouveltest.Fault{
				{Status: http.StatusNotFound, Count: 2}, pass, {Status: http.StatusNotFound, Count: 2},
			},
			wantStatus: store.StatusCompleted, wantStatuses: []int{404, 404, 200, 404, 404, 200, 200},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 3*time.Minute, nil, nil)
			const id = "clx8k9v2t0001qz8x7r4e5w6m"
			if tc.known {
				f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 3})
			}
			for _, fault := range tc.faults {
				fault.JobID = id
				f.Nouvel.InjectFault(fault)
			}
			f.track(t, id)
			f.runToEnd(t)

			if got := statuses(requestsFor(f.Nouvel.Requests(), id)); !slices.Equal(got, tc.wantStatuses) {
				t.Errorf("answers to the polls: got %v, want %v", got, tc.wantStatuses)
			}
			j := f.job(t, id)
			if j.Status != tc.wantStatus || !j.Terminal || j.Seq == 0 || j.TerminalAt == nil || j.Source != store.SourcePoll {
				t.Errorf("job: got status %s terminal=%v seq %d terminalAt %v source %s, want %s terminal with a seq, source poll",
					j.Status, j.Terminal, j.Seq, j.TerminalAt, j.Source, tc.wantStatus)
			}
			if j.PollCount != len(tc.wantStatuses) {
				t.Errorf("job: got pollCount %d, want %d", j.PollCount, len(tc.wantStatuses))
			}
			if tc.wantStatus == store.StatusNotFound && !strings.Contains(j.LastError, "404") {
				t.Errorf("job: got lastError %q, want it to name the 404s", j.LastError)
			}
		})
	}
}

func TestJobExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	const ttl = 5 * time.Minute
	f := newFixture(t, ttl+2*time.Minute, nil, func(o *reconcile.Options) { o.TTL = ttl })
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: "job-endless", Polls: 1 << 30})
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: "job-ends", Polls: 3})
	f.track(t, "job-endless", "job-ends")
	f.runToEnd(t)

	if j := checkEnded(t, f, "job-ends"); j.Status == store.StatusExpired {
		t.Errorf("job-ends: got expired, want Nouvel's outcome")
	}
	j := f.job(t, "job-endless")
	if j.Status != store.StatusExpired || !j.Terminal || j.Seq == 0 || j.TerminalAt == nil {
		t.Fatalf("job-endless: got status %s terminal=%v seq %d terminalAt %v, want expired, terminal, with a seq",
			j.Status, j.Terminal, j.Seq, j.TerminalAt)
	}
	expiredAt := *j.TerminalAt
	if earliest, latest := j.CreatedAt.Add(ttl), j.CreatedAt.Add(ttl+sweepEvery); expiredAt.Before(earliest) || expiredAt.After(latest) {
		t.Errorf("job-endless: expired at %s, want between %s and %s after it was tracked",
			expiredAt.Sub(j.CreatedAt), ttl, ttl+sweepEvery)
	}
	reqs := requestsFor(sortedRequests(f), "job-endless")
	if len(reqs) == 0 || expiredAt.Sub(reqs[len(reqs)-1].Time) > 20*time.Second {
		t.Errorf("job-endless: polls at %v, want polling to go on until it expired at %s", offsets(reqs), expiredAt.Sub(simStart))
	}
	for _, r := range reqs {
		if r.Time.After(expiredAt) {
			t.Errorf("job-endless: polled at %s, after it expired at %s", r.Time.Sub(simStart), expiredAt.Sub(simStart))
		}
	}
}

// signedWebhook posts Nouvel's webhook for the job as the stand-in knows it.
func signedWebhook(t *testing.T, f *fixture, id string) int {
	truth, _ := f.Nouvel.Job(id)
	body, err := json.Marshal(map[string]any{
		"event": "job.completed", "jobId": id, "status": truth.Outcome,
		"totalProjects": truth.TotalProjects, "completedProjects": truth.CompletedProjects,
		"failedProjects": truth.FailedProjects, "projects": truth.Projects,
	})
	if err != nil {
		t.Errorf("webhook body: %v", err)
		return 0
	}
	req, err := http.NewRequest(http.MethodPost, f.Public.URL+"/webhooks/nouvel", bytes.NewReader(body))
	if err != nil {
		t.Errorf("webhook request: %v", err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nouvel-Signature", nouveltest.Sign(testSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("post webhook: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWebhookMissedOnlyAfterGrace(t *testing.T) {
	t.Parallel()
	// Every simulated moment here falls on a whole second, so no sweep runs
	// at exactly a poll's end plus the grace: a webhook posted at the first
	// moment past it arrives late, yet before any sweep could flag the job.
	const grace = time.Minute + 500*time.Millisecond
	f := newFixture(t, 2*time.Minute, nil, func(o *reconcile.Options) { o.MissedGrace = grace })
	jobs := []struct {
		id          string
		hook        string        // the stand-in's webhookUrl: "" sends none
		lateWebhook time.Duration // when set, the test posts the webhook at the first moment this long after the poll saw the end
		wantSource  string
		wantMissed  bool
	}{
		{id: "job-late-after-grace", lateWebhook: grace, wantSource: store.SourcePoll, wantMissed: true},
		{id: "job-no-webhook", wantSource: store.SourcePoll, wantMissed: true},
		{id: "job-webhook", hook: publicHook, wantSource: store.SourceWebhook},
		{id: "job-late-within-grace", lateWebhook: grace / 2, wantSource: store.SourcePoll},
	}
	for _, j := range jobs {
		f.Nouvel.AddJob(nouveltest.JobSpec{ID: j.id, Polls: 1, WebhookURL: j.hook})
		f.track(t, j.id)
	}

	posted, beforeGrace := map[string]bool{}, 0
	watch := func(now time.Time) { // runs on the reconciler's goroutine: no t.Fatal
		for _, w := range jobs {
			j, err := f.Store.Job(context.Background(), w.id)
			if err != nil {
				t.Errorf("Job(%s): %v", w.id, err)
				continue
			}
			if j.TerminalAt == nil {
				continue
			}
			// The reconciler has done nothing at now yet: whatever is
			// flagged was flagged before now.
			if !now.After(j.TerminalAt.Add(grace)) {
				beforeGrace++
				if j.WebhookMissed {
					t.Errorf("%s: webhookMissed at %s, only %s after the poll saw the end; want it only after the grace %s",
						w.id, now.Sub(simStart), now.Sub(*j.TerminalAt), grace)
				}
			}
			if w.lateWebhook > 0 && !posted[w.id] && !now.Before(j.TerminalAt.Add(w.lateWebhook)) {
				posted[w.id] = true
				if status := signedWebhook(t, f, w.id); status != http.StatusOK {
					t.Errorf("%s: late webhook answered %d, want 200", w.id, status)
				}
			}
		}
	}
	f.runPhase(t, simStart.Add(2*time.Minute), watch)

	if beforeGrace == 0 {
		t.Fatal("the clock never moved within the grace: nothing was checked")
	}
	for _, w := range jobs {
		if w.lateWebhook > 0 && !posted[w.id] {
			t.Errorf("%s: the late webhook was never posted", w.id)
		}
		j := checkEnded(t, f, w.id)
		if j.Source != w.wantSource || j.WebhookMissed != w.wantMissed {
			t.Errorf("%s: got source %s webhookMissed=%v, want %s %v", w.id, j.Source, j.WebhookMissed, w.wantSource, w.wantMissed)
		}
	}
}

func TestRestartResumesScheduleFromStore(t *testing.T) {
	t.Parallel()
	const length = 160 * time.Second
	f := newFixture(t, length, nil, nil)
	const long, unknown, flaky = "job-long", "job-unknown", "job-flaky"
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: long, Polls: 8, Outcome: store.StatusPartial, Projects: 3})
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: flaky, Polls: 2})
	f.Nouvel.InjectFault(nouveltest.Fault{Status: http.StatusBadGateway, Count: 3, JobID: flaky})
	f.track(t, long, unknown, flaky)

	const turnWait = 4 * time.Second
	restartAt := simStart.Add(25 * time.Second)
	f.runPhase(t, restartAt, nil)
	before := sortedRequests(f)
	if n := len(requestsFor(before, long)); n != 2 {
		t.Fatalf("%s: got %d polls before the restart, want 2 (at 10s and 20s)", long, n)
	}
	if n := len(requestsFor(before, unknown)); n != 2 {
		t.Fatalf("%s: got %d polls before the restart, want 2 (two 404s)", unknown, n)
	}
	if j := f.job(t, long); j.Terminal {
		t.Fatalf("%s: ended before the restart", long)
	}

	f.runPhase(t, simStart.Add(length), nil)
	reqs := sortedRequests(f)

	// The gaps go on from where the store left them: no poll at the
	// restart, and the 1.5× and 2× steps are not forgotten. Three jobs
	// share a budget of one request per 2 s, so a poll may wait up to
	// 4 s for its turn.
	want := []time.Duration{10 * time.Second, 15 * time.Second, 20 * time.Second, 20 * time.Second,
		20 * time.Second, 20 * time.Second, 20 * time.Second}
	got := gapsOf(requestsFor(reqs, long))
	if len(got) != len(want) {
		t.Errorf("%s: gaps across the restart: got %v, want %v (up to %s later each)", long, got, want, turnWait)
	}
	for i := range min(len(got), len(want)) {
		if got[i] < want[i] || got[i] > want[i]+turnWait {
			t.Errorf("%s: gaps across the restart: got %v, want %v (up to %s later each)", long, got, want, turnWait)
			break
		}
	}
	checkEnded(t, f, long)
	checkEnded(t, f, flaky)
	if got := statuses(requestsFor(reqs, flaky)); !slices.Equal(got, []int{502, 502, 502, 200, 200}) {
		t.Errorf("%s: got answers %v, want three 502s then two polls", flaky, got)
	}
	for k, g := range gapsOf(requestsFor(reqs, flaky))[:3] {
		if base := 10 * time.Second << k; g < base/2 || g > base+turnWait {
			t.Errorf("%s: gap after failure %d: got %s, want %s to %s", flaky, k+1, g, base/2, base+turnWait)
		}
	}

	// The 404 count survived too: the third 404 in a row ends it.
	if got := len(requestsFor(reqs, unknown)); got != 3 {
		t.Errorf("%s: got %d polls, want 3", unknown, got)
	}
	if j := f.job(t, unknown); j.Status != store.StatusNotFound || !j.Terminal {
		t.Errorf("%s: got status %s terminal=%v, want not_found terminal", unknown, j.Status, j.Terminal)
	}
	for _, id := range []string{long, flaky, unknown} {
		truth, _ := f.Nouvel.Job(id)
		if j := f.job(t, id); j.PollCount != len(requestsFor(reqs, id)) || truth.Polls != truth.PollsNeeded {
			t.Errorf("%s: got pollCount %d, stand-in polls %d, want %d and %d",
				id, j.PollCount, truth.Polls, len(requestsFor(reqs, id)), truth.PollsNeeded)
		}
	}
}
