package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Shape of TestForwardCrashDeliversEveryJob.
const (
	fwdCrashJobs    = 2000
	fwdCrashSenders = 16
	fwdCrashKillAt  = 200 // jobs the slow app took before the SIGKILL
	fwdCrashAppSlow = 50 * time.Millisecond
)

// fwdCrashEnv forwards to url on a short schedule, so that the jobs the
// down app refused are due again within a second, and thirty steps of it
// outlast the test's down phase.
func fwdCrashEnv(url string) []string {
	return []string{
		"NOUVELHOOK_FORWARD_URL=" + url,
		"NOUVELHOOK_FORWARD_SCHEDULE=" + strings.Repeat("1s,", 29) + "1s",
		"NOUVELHOOK_FORWARD_TIMEOUT=5s",
	}
}

// TestForwardCrashDeliversEveryJob is "no forward is lost": 2,000 jobs end
// by signed webhooks while the app is down (503), so all 2,000 forwards
// wait in the queue; the app comes back slow to answer (it takes each job
// at once and answers 200 50 ms later), and nouvelhook is killed with
// SIGKILL while it drains the backlog with attempts in flight. After a
// restart every job reaches the app at least once, the queue says all were
// delivered, and the duplicates (jobs the app took whose answer the killed
// process never got) are counted and logged.
func TestForwardCrashDeliversEveryJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	bin := replicaBinary(t)
	db := filepath.Join(t.TempDir(), "forward.db")
	app := newFwdApp(t, appDown)

	c := startChild(t, bin, db, fwdCrashEnv(app.URL())...)
	ids := make([]string, fwdCrashJobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("fwd-crash-%05d", i)
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range fwdCrashSenders {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= fwdCrashJobs || t.Failed() {
					return
				}
				code, ans, err := c.post(ids[i])
				if err != nil || code != http.StatusOK || ans.Duplicate {
					t.Errorf("POST %s: got %d %s %v, want 200 for a new job", ids[i], code, ans.raw, err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var st forwardStats
	c.adminGet(t, "/v1/stats", &st)
	if st.Forwards == nil {
		t.Fatal("GET /v1/stats: no forwards, want the queue's counts with forwarding on")
	}
	if got := st.Forwards.Depth; got != fwdCrashJobs {
		t.Fatalf("with the app down: queue depth %d (%v), want all %d pending", got, st.Forwards.ByState, fwdCrashJobs)
	}
	if jobs, _ := app.accepted(); jobs != 0 {
		t.Fatalf("the down app accepted %d jobs, want none", jobs)
	}

	// The app comes back slow; kill nouvelhook while it drains, with
	// attempts in flight.
	app.set(appSlow, fwdCrashAppSlow)
	if !waitFor(60*time.Second, func() bool { jobs, _ := app.accepted(); return jobs >= fwdCrashKillAt }) {
		jobs, _ := app.accepted()
		t.Fatalf("the app accepted only %d jobs in 60 s\n%s", jobs, logTail(c.log))
	}
	if err := c.proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.wait(10 * time.Second)
	atKill, answersAtKill := app.accepted()
	t.Logf("SIGKILL with %d of %d jobs taken by the app (%d requests taken)", atKill, fwdCrashJobs, answersAtKill)

	app.set(appUp, 0)
	c = startChild(t, bin, db, fwdCrashEnv(app.URL())...)
	if !waitFor(90*time.Second, func() bool { jobs, _ := app.accepted(); return jobs == fwdCrashJobs }) {
		jobs, _ := app.accepted()
		t.Fatalf("after the restart the app has %d of %d jobs in 90 s\n%s", jobs, fwdCrashJobs, logTail(c.log))
	}
	// The queue agrees, once the last results are recorded.
	ok := waitFor(10*time.Second, func() bool {
		c.adminGet(t, "/v1/stats", &st)
		return st.Forwards != nil && st.Forwards.ByState["delivered"] == fwdCrashJobs && st.Forwards.Depth == 0
	})
	if !ok {
		t.Errorf("after the restart: forwards %+v, want all %d delivered and none waiting", st.Forwards, fwdCrashJobs)
	}
	for _, id := range ids {
		if len(app.hitsFor(id)) == 0 {
			t.Fatalf("job %s never reached the app", id)
		}
	}
	var j jobForward
	c.adminGet(t, "/v1/jobs/"+ids[len(ids)-1], &j)
	if j.Forward == nil || j.Forward.State != "delivered" || j.Forward.LastStatus != http.StatusOK {
		t.Errorf("GET /v1/jobs/%s: %v, want its forward delivered with status 200", ids[len(ids)-1], j)
	}
	app.checkSignatures()
	jobs, answers := app.accepted()
	t.Logf("every one of %d jobs delivered at least once; %d duplicates (%d requests taken in all)", jobs, answers-jobs, answers)
	c.proc.Process.Signal(syscall.SIGTERM)
	if err := c.wait(30 * time.Second); err != nil {
		t.Errorf("SIGTERM: got %v, want exit status 0\n%s", err, logTail(c.log))
	}
}
