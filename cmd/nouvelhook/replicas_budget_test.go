package main

import (
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
)

// Three built serve binaries on one Postgres schema share one poll budget:
// one polls at a time, and when it is killed with SIGKILL another takes
// over within 30 s. The stand-in Nouvel counts every request with its
// start and end: no 60 s window holds more than the budget, and no job is
// polled by two replicas at once. The demand is far above the budget
// (60 jobs due every second), so without the election each replica would
// spend the whole budget and together three times it.
func TestReplicasShareOnePollBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three serve binaries for about 80 s; skipped with -short")
	}
	dbURL := pgSchemaURL(t, "")
	bin := buildNouvelhook(t)
	const budget = 30 // one request every 2 s; the stand-in allows 60 a minute, as Nouvel does
	nouvel := nouveltest.New(nouveltest.Options{APIKey: testAPIKey, WebhookSecret: testSecret, DropRate: 1})
	t.Cleanup(nouvel.Close)
	env := []string{"NOUVEL_API_KEY=" + testAPIKey, "NOUVEL_API_BASE_URL=" + nouvel.URL(),
		"NOUVELHOOK_POLL_INTERVAL=1s", fmt.Sprintf("NOUVELHOOK_POLL_BUDGET=%d", budget)}

	var replicas []*child
	for range 3 {
		replicas = append(replicas, startChild(t, bin, dbURL, env...))
	}
	for i := range 60 {
		id := fmt.Sprintf("clx8k9v2t%04dqz8x7r4e5w6m", i)
		nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 1 << 30})
		if code, body := postJSON(t, replicas[i%3].admin+"/v1/jobs", `{"jobId":"`+id+`"}`); code != http.StatusCreated {
			t.Fatalf("track %s: got %d %s", id, code, body)
		}
	}

	// Phase 1: about 40 s of polling by whichever replica leads.
	waitRequests(t, nouvel, 20, 90*time.Second)
	leader := onlyLeader(t, replicas)
	if err := replicas[leader].proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	replicas[leader].wait(10 * time.Second)
	killedAt := time.Now()
	before := len(nouvel.Requests())

	// Phase 2: another replica takes over, and polls for about 35 s more.
	waitRequests(t, nouvel, before+1, 60*time.Second)
	reqs := nouvel.Requests()
	slices.SortStableFunc(reqs, func(a, b nouveltest.Request) int { return a.Time.Compare(b.Time) })
	var resumed time.Time
	for _, r := range reqs {
		if r.Time.After(killedAt) {
			resumed = r.Time
			break
		}
	}
	if gap := resumed.Sub(killedAt); gap > 30*time.Second {
		t.Errorf("polling resumed %s after the leader was killed, want within 30 s", gap.Round(time.Millisecond))
	}
	waitRequests(t, nouvel, before+17, 90*time.Second)
	survivors := slices.Delete(slices.Clone(replicas), leader, leader+1)
	onlyLeader(t, survivors)

	reqs = nouvel.Requests()
	slices.SortStableFunc(reqs, func(a, b nouveltest.Request) int { return a.Time.Compare(b.Time) })
	run := reqs[len(reqs)-1].Time.Sub(reqs[0].Time)
	if run < 65*time.Second {
		t.Errorf("the requests span %s, want more than a minute so that whole windows are checked", run)
	}
	worst, at := 0, time.Time{}
	for i, r := range reqs {
		n := 0
		for _, s := range reqs[i:] {
			if s.Time.Sub(r.Time) < time.Minute {
				n++
			}
		}
		if n > worst {
			worst, at = n, r.Time
		}
		if r.Status != http.StatusOK {
			t.Errorf("request %d for %s answered %d, want 200 (a 429 means the key's limit was hit)", i+1, r.JobID, r.Status)
		}
	}
	// The reconciler spaces requests 60 s/budget apart when it sends them;
	// their arrival, a millisecond or so later, may shift the one at the
	// window's edge, so a request landing within 100 ms of the 60 s mark
	// is not counted twice.
	if worst > budget {
		edge := 0
		for _, s := range reqs {
			if d := s.Time.Sub(at); d >= time.Minute-100*time.Millisecond && d < time.Minute {
				edge++
			}
		}
		if worst-edge > budget {
			t.Errorf("got %d requests in the minute from %s, want at most the budget %d", worst, at.Format(time.RFC3339Nano), budget)
		}
	}
	open := map[string]nouveltest.Request{}
	overlaps := 0
	for _, r := range reqs {
		if prev, ok := open[r.JobID]; ok && r.Time.Before(prev.End) {
			overlaps++
			t.Errorf("%s: a request at %s began before the one at %s was answered (%s)", r.JobID,
				r.Time.Format(time.RFC3339Nano), prev.Time.Format(time.RFC3339Nano), prev.End.Format(time.RFC3339Nano))
		}
		if prev, ok := open[r.JobID]; !ok || r.End.After(prev.End) {
			open[r.JobID] = r
		}
	}
	minGap := time.Duration(1<<63 - 1)
	for i := 1; i < len(reqs); i++ {
		minGap = min(minGap, reqs[i].Time.Sub(reqs[i-1].Time))
	}
	t.Logf("%d requests over %s, budget %d/min: worst 60 s window %d, least gap %s; failover: first poll %s after SIGKILL",
		len(reqs), run.Round(time.Second), budget, worst, minGap.Round(time.Millisecond), resumed.Sub(killedAt).Round(time.Millisecond))
}

// waitRequests waits until the stand-in has received at least n requests.
func waitRequests(t *testing.T, nouvel *nouveltest.Server, n int, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); len(nouvel.Requests()) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("got %d requests within %s, want %d", len(nouvel.Requests()), limit, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onlyLeader returns the index of the one replica whose /v1/stats says it
// polls, and fails unless exactly one does.
func onlyLeader(t *testing.T, replicas []*child) int {
	t.Helper()
	leader, n := -1, 0
	for i, c := range replicas {
		var st struct {
			Poller struct {
				Enabled bool `json:"enabled"`
				Leader  bool `json:"leader"`
			} `json:"poller"`
		}
		c.adminGet(t, "/v1/stats", &st)
		if !st.Poller.Enabled {
			t.Errorf("replica %d: the poller is not enabled", i)
		}
		if st.Poller.Leader {
			leader, n = i, n+1
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas say they lead, want exactly 1", n)
	}
	return leader
}
