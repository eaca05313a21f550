package reconcile_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// A 429's pause outlives a restart of the one process on SQLite: the
// process that starts within the Retry-After sends nothing before it ends,
// though the job is overdue, and then polls again.
func TestPauseOutlivesARestart(t *testing.T) {
	t.Parallel()
	const retry = 3 * time.Minute
	f := newFixture(t, 6*time.Minute, nil, nil)
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: "job-1", Polls: 1 << 30})
	f.Nouvel.InjectFault(nouveltest.Fault{Status: http.StatusTooManyRequests, RetryAfter: retry, JobID: "job-1"})
	f.track(t, "job-1")
	f.runPhase(t, simStart.Add(30*time.Second), nil)
	reqs := sortedRequests(f)
	if len(reqs) != 1 || reqs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("before the restart: got statuses %v at %v, want one 429", statuses(reqs), offsets(reqs))
	}
	limited := reqs[0].Time

	f.runPhase(t, simStart.Add(6*time.Minute), nil)
	after := sortedRequests(f)[1:]
	if len(after) == 0 {
		t.Fatal("no request after the restart, want polling to resume once the pause ended")
	}
	if first := after[0].Time; first.Before(limited.Add(retry)) {
		t.Errorf("first request after the restart at %s, %s after the 429; want none within its Retry-After %s",
			first.Sub(simStart), first.Sub(limited), retry)
	}
}

// On SQLite a restart is how the operator says the key was fixed: the
// process that starts after a lock-out checks the key with one request. If
// Nouvel refuses it again, it stops there; once Nouvel accepts it, the
// lock-out is cleared and polling goes on.
func TestRestartChecksALockedOutKeyOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10*time.Minute, nil, nil)
	f.Nouvel.AddJob(nouveltest.JobSpec{ID: "job-1", Polls: 1 << 30})
	f.track(t, "job-1")
	f.Nouvel.SetAuthStatus(http.StatusUnauthorized)
	f.runPhase(t, simStart.Add(time.Minute), nil)
	f.runPhase(t, simStart.Add(2*time.Minute), nil)
	if reqs := sortedRequests(f); len(reqs) != 2 {
		t.Fatalf("a restart with the key still refused: got statuses %v at %v, want two 401s, one per process",
			statuses(reqs), offsets(reqs))
	}
	key := reconcile.KeyFingerprint(testKey)
	if lo := lockOut(t, f, key); lo.At.Before(simStart.Add(time.Minute)) || !strings.Contains(lo.Reason, "401") {
		t.Errorf("lock-out after the second refusal: got %+v, want one noted by the restarted process, naming the 401", lo)
	}

	f.Nouvel.SetAuthStatus(0)
	f.runPhase(t, simStart.Add(10*time.Minute), nil)
	reqs := sortedRequests(f)[2:]
	if len(reqs) < 2 {
		t.Fatalf("after a restart with the key accepted: got statuses %v, want polling to go on", statuses(reqs))
	}
	for _, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("request at %s answered %d, want 200", r.Time.Sub(simStart), r.Status)
		}
	}
	if lo := lockOut(t, f, key); !lo.At.IsZero() {
		t.Errorf("lock-out once Nouvel accepted the key: got %+v, want it cleared", lo)
	}
}

// lockOut is the lock-out the store holds for the key fingerprint key.
func lockOut(t *testing.T, f *fixture, key string) store.LockOut {
	t.Helper()
	st, err := f.Store.PollerState(context.Background(), key)
	if err != nil {
		t.Fatalf("PollerState: %v", err)
	}
	return st.LockOut
}
