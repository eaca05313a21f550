package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load shape of the crash test, per cycle.
const (
	crashCycles  = 4    // the last one ends with SIGTERM, the others with SIGKILL
	crashSenders = 16   // concurrent webhook senders
	crashKillAt  = 300  // acknowledged deliveries before the kill
	crashMaxReqs = 4000 // hard cap on requests per cycle
	// crashResendEvery: each sender re-sends one of its acknowledged jobs
	// every so many requests, which must come back as a duplicate.
	crashResendEvery = 8
)

// TestCrashKeepsAcknowledgedDeliveries is the durability guarantee: a 200
// means committed. It runs the real binary on one database, kills it with
// SIGKILL while many senders are posting, restarts it, and finds every
// delivery that was acknowledged, terminal, once, with a gap-free seq. The
// last cycle ends with SIGTERM instead, which must exit 0 and lose nothing.
func TestCrashKeepsAcknowledgedDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	bin := buildNouvelhook(t)
	db := filepath.Join(t.TempDir(), "crash.db")

	acked := map[string]int{} // job id → 200 answers, across all cycles
	var lastAcked []string    // the latest acks of the previous cycle
	for cycle := range crashCycles {
		c := startChild(t, bin, db)
		if cycle > 0 {
			checkAcked(t, c, acked, lastAcked)
		}
		term := cycle == crashCycles-1
		res := c.load(t, cycle, slices.Collect(maps.Keys(acked)), term)
		for _, id := range res.acks {
			acked[id]++
		}
		lastAcked = res.acks[max(0, len(res.acks)-32):]
		how := "SIGKILL"
		if term {
			how = "SIGTERM"
		}
		t.Logf("cycle %d: %d requests, %d acknowledged (%d of them duplicates), then %s; %d jobs acknowledged in all",
			cycle, res.requests, len(res.acks), res.duplicates, how, len(acked))
		if term {
			if err := c.wait(30 * time.Second); err != nil {
				t.Fatalf("after SIGTERM: got %v, want exit status 0\n%s", err, logTail(c.log))
			}
		} else {
			c.wait(30 * time.Second) // killed: the exit status says nothing
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	c := startChild(t, bin, db)
	checkAcked(t, c, acked, lastAcked)
	c.proc.Process.Signal(syscall.SIGTERM)
	if err := c.wait(30 * time.Second); err != nil {
		t.Fatalf("final SIGTERM: got %v, want exit status 0\n%s", err, logTail(c.log))
	}
}

// buildNouvelhook builds this package's binary into a temp dir.
func buildNouvelhook(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nouvelhook")
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child is one run of the binary.
type child struct {
	proc          *exec.Cmd
	log           *syncBuffer
	public, admin string
	exited        chan struct{}
	err           error // Wait's result, once exited is closed
	client        *http.Client
}

// startChild starts `nouvelhook serve` on db with both listeners on free
// loopback ports, and waits until its log says where it listens; env adds
// settings as KEY=value. The child is killed when the test ends, whatever
// happened.
func startChild(t *testing.T, bin, db string, env ...string) *child {
	t.Helper()
	c := spawnReplica(t, bin, db, env...)
	c.awaitListening(t)
	return c
}

// crashEnviron is the test's environment without any of the service's own
// variables, so that a developer's settings (an API key, say) do not leak in.
func crashEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOUVEL") {
			env = append(env, kv)
		}
	}
	return env
}

// wait waits for the child to exit and returns Wait's error.
func (c *child) wait(limit time.Duration) error {
	select {
	case <-c.exited:
		return c.err
	case <-time.After(limit):
		c.proc.Process.Kill()
		<-c.exited
		return fmt.Errorf("did not exit within %v", limit)
	}
}

// loadResult is what one cycle of load saw.
type loadResult struct {
	acks       []string // job ids answered 200, in the order the answers came
	duplicates int      // of those, re-sends answered duplicate:true
	requests   int64
}

// load runs crashSenders senders posting distinct signed jobs (and re-sends
// of jobs already acknowledged) until crashKillAt deliveries have been
// acknowledged, then signals the child (SIGKILL, or SIGTERM when term) while
// they are still sending, and returns once every sender has stopped.
func (c *child) load(t *testing.T, cycle int, earlier []string, term bool) loadResult {
	t.Helper()
	var (
		stopping atomic.Bool  // set just before the signal
		requests atomic.Int64 // started, for the hard cap
		ackCount atomic.Int64
		reached  = make(chan struct{}) // closed by the crashKillAt-th ack
		mu       sync.Mutex
		res      loadResult
		wg       sync.WaitGroup
	)
	ack := func(id string, dup bool) {
		mu.Lock()
		res.acks = append(res.acks, id)
		if dup {
			res.duplicates++
		}
		mu.Unlock()
		if ackCount.Add(1) == crashKillAt {
			close(reached)
		}
	}
	for w := range crashSenders {
		wg.Go(func() {
			var mine []string
			for n := 0; ; n++ {
				if stopping.Load() || requests.Add(1) > crashMaxReqs {
					return
				}
				// A re-send of a job this run or an earlier one already
				// acknowledged; the first one of a later cycle checks that
				// dedupe survived the crash.
				id, resend := fmt.Sprintf("crash%d-w%02d-%05d", cycle, w, n), false
				switch {
				case n == 0 && len(earlier) > 0:
					id, resend = earlier[(cycle*crashSenders+w)%len(earlier)], true
				case n%crashResendEvery == crashResendEvery-1 && len(mine) > 0:
					id, resend = mine[n%len(mine)], true
				}
				code, ans, err := c.post(id)
				if err != nil {
					if !stopping.Load() {
						t.Errorf("POST %s before the %s: %v", id, signalName(term), err)
					}
					return
				}
				if code != http.StatusOK {
					// The senders stop only after the signal; a refusal
					// before it is a defect, after it a possible race with
					// shutdown, which must not be a 200.
					if !stopping.Load() {
						t.Errorf("POST %s: got %d %s, want 200", id, code, ans.raw)
					}
					return
				}
				if ans.err == nil && (ans.JobID != id || !ans.Received || ans.Duplicate != resend) {
					t.Errorf("POST %s (re-send %v): got answer %s, want received, that job, duplicate %v",
						id, resend, ans.raw, resend)
				}
				ack(id, resend)
				if !resend {
					mine = append(mine, id)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	select {
	case <-reached:
	case <-done:
		t.Errorf("cycle %d: senders stopped after %d acknowledgements, before %d", cycle, ackCount.Load(), crashKillAt)
	case <-c.exited:
		t.Errorf("cycle %d: serve exited under load: %v\n%s", cycle, c.err, logTail(c.log))
	case <-time.After(30 * time.Second):
		t.Errorf("cycle %d: only %d acknowledgements in 30s", cycle, ackCount.Load())
	}
	stopping.Store(true)
	sig := os.Signal(syscall.SIGKILL)
	if term {
		sig = syscall.SIGTERM
	}
	if err := c.proc.Process.Signal(sig); err != nil {
		t.Errorf("cycle %d: %s: %v", cycle, signalName(term), err)
	}
	<-done
	res.requests = min(requests.Load(), crashMaxReqs)
	return res
}

func signalName(term bool) string {
	if term {
		return "SIGTERM"
	}
	return "SIGKILL"
}

// webhookReply is the webhook's 200 answer, with the raw text for messages.
type webhookReply struct {
	Received  bool   `json:"received"`
	JobID     string `json:"jobId"`
	Duplicate bool   `json:"duplicate"`
	raw       string
	err       error // reading or decoding the answer; its status still counts
}

// post delivers a signed completed event for id. A status is an answer even
// if the body is then cut short: the server wrote 200 only after the commit.
func (c *child) post(id string) (int, webhookReply, error) {
	body := event(id, "completed")
	req, err := http.NewRequest(http.MethodPost, c.public+"/webhooks/nouvel", bytes.NewReader(body))
	if err != nil {
		return 0, webhookReply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nouvel-Signature", sign(testSecret, body))
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, webhookReply{}, err
	}
	defer resp.Body.Close()
	var ans webhookReply
	b, err := io.ReadAll(resp.Body)
	ans.raw = string(b)
	if ans.err = err; err == nil {
		ans.err = json.Unmarshal(b, &ans)
	}
	return resp.StatusCode, ans, nil
}

// crashJob is the part of a job the check reads.
type crashJob struct {
	JobID             string `json:"jobId"`
	Status            string `json:"status"`
	Terminal          bool   `json:"terminal"`
	Source            string `json:"source"`
	WebhookDeliveries int    `json:"webhookDeliveries"`
	Seq               int64  `json:"seq"`
	Deliveries        []struct {
		Duplicate bool   `json:"duplicate"`
		Status    string `json:"status"`
		Copies    int    `json:"copies"` // identical bytes are kept once, and counted
	} `json:"deliveries"`
	DeliveriesTotal int `json:"deliveriesTotal"`
}

// copiesListed is how many deliveries the listed ones stand for.
func (j crashJob) copiesListed() int {
	n := 0
	for _, d := range j.Deliveries {
		n += d.Copies
	}
	return n
}

// checkAcked reads the whole log back through the admin API and checks that
// every acknowledged job is in it once, completed by a webhook, with at least
// as many deliveries as 200s it got; that seq runs 1..N with no gap or
// repeat, in the job list and in the change feed alike; and that the latest
// acks before the kill show their deliveries one by one.
func checkAcked(t *testing.T, c *child, acked map[string]int, latest []string) {
	t.Helper()
	jobs := map[string]crashJob{}
	cursor := ""
	for {
		var page struct {
			Jobs       []crashJob `json:"jobs"`
			NextCursor string     `json:"nextCursor"`
		}
		c.adminGet(t, "/v1/jobs?limit=500&cursor="+url.QueryEscape(cursor), &page)
		for _, j := range page.Jobs {
			if _, seen := jobs[j.JobID]; seen {
				t.Errorf("job %s listed twice", j.JobID)
			}
			jobs[j.JobID] = j
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}

	missing := 0
	for id, n := range acked {
		j, ok := jobs[id]
		switch {
		case !ok:
			if missing++; missing <= 10 {
				t.Errorf("acknowledged job %s is not in the log", id)
			}
		case !j.Terminal || j.Status != "completed" || j.Source != "webhook":
			t.Errorf("acknowledged job %s: status %q terminal %v source %q, want completed, terminal, webhook",
				id, j.Status, j.Terminal, j.Source)
		case j.WebhookDeliveries < n:
			t.Errorf("job %s: %d webhook deliveries, want at least the %d acknowledged", id, j.WebhookDeliveries, n)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged jobs are missing after the restart", missing, len(acked))
	}

	// Every job in the log ended through a delivery, so seq must be exactly
	// 1..N: one number per job, none reused, none skipped.
	seqs := make([]int64, 0, len(jobs))
	for id, j := range jobs {
		if !j.Terminal || j.Seq < 1 {
			t.Errorf("job %s: terminal %v seq %d, want terminal with a seq", id, j.Terminal, j.Seq)
		}
		seqs = append(seqs, j.Seq)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Errorf("seqs sorted: position %d holds %d, want %d (duplicate or gap)", i, s, i+1)
			break
		}
	}

	// The change feed, oldest first, holds the same jobs with the same seqs.
	after, fed := int64(0), 0
	for {
		var page struct {
			Events []crashJob `json:"events"`
			Last   int64      `json:"last"`
		}
		c.adminGet(t, fmt.Sprintf("/v1/events?after=%d&limit=500", after), &page)
		if len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			if e.Seq != after+1 {
				t.Fatalf("change feed: got seq %d after %d, want %d", e.Seq, after, after+1)
			}
			if j, ok := jobs[e.JobID]; !ok || j.Seq != e.Seq {
				t.Errorf("change feed: job %s seq %d, job list has %+v", e.JobID, e.Seq, j)
			}
			after = e.Seq
			fed++
		}
		if page.Last != after {
			t.Errorf("change feed: last %d, want %d", page.Last, after)
		}
	}
	if fed != len(jobs) {
		t.Errorf("change feed holds %d jobs, the list %d", fed, len(jobs))
	}

	var stats struct {
		Jobs    int   `json:"jobs"`
		LastSeq int64 `json:"lastSeq"`
	}
	c.adminGet(t, "/v1/stats", &stats)
	if stats.Jobs != len(jobs) || stats.LastSeq != int64(len(jobs)) {
		t.Errorf("stats: %d jobs, last seq %d; want %d and %d", stats.Jobs, stats.LastSeq, len(jobs), len(jobs))
	}

	for _, id := range latest {
		var j crashJob
		c.adminGet(t, "/v1/jobs/"+id, &j)
		if j.JobID != id || !j.Terminal || j.copiesListed() < acked[id] || j.DeliveriesTotal < acked[id] {
			t.Errorf("GET /v1/jobs/%s: %+v, want it terminal with at least %d deliveries listed and in all", id, j, acked[id])
		}
	}
	t.Logf("restart: all %d acknowledged jobs present and terminal; %d jobs in the log, seq 1..%d",
		len(acked), len(jobs), len(seqs))
}

// adminGet GETs path on the child's admin listener and decodes the 200
// answer into v.
func (c *child) adminGet(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := c.client.Get(c.admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, want 200", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %q: %v", path, b, err)
	}
}

// logTail is the end of a child's log, for failure messages.
func logTail(b *syncBuffer) string {
	s := b.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}
