package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store/postgres"
)

// handover is two or more reconcilers, each on a Postgres store of its own
// (as separate replicas are) on one schema, polling the stand-in Nouvel in
// turn on one simulated clock.
type handover struct {
	dbURL  string
	clock  *nouveltest.SimClock
	start  time.Time
	nouvel *nouveltest.Server
}

func newHandover(t *testing.T, apiKey string) *handover {
	h := &handover{dbURL: pgSchemaURL(t, ""), start: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	h.clock = nouveltest.NewSimClock(h.start, time.Hour)
	h.nouvel = nouveltest.New(nouveltest.Options{APIKey: apiKey, WebhookSecret: testSecret, Now: h.clock.Now})
	t.Cleanup(h.nouvel.Close)
	h.nouvel.AddJob(nouveltest.JobSpec{ID: "job-1", Polls: 1 << 30})
	if _, _, err := h.replicaStore(t).Track(context.Background(), "job-1", h.start.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return h
}

// replicaStore opens a store of its own on the schema, as a replica does.
func (h *handover) replicaStore(t *testing.T) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), h.dbURL, postgres.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// replica returns a reconciler made now (its start, as far as a lock-out
// is concerned), polling with apiKey on a store of its own, on clock.
func (h *handover) replica(t *testing.T, apiKey string, clock reconcile.Clock) *reconcile.Reconciler {
	rec := reconcile.New(reconcile.Options{
		Store: h.replicaStore(t), Client: reconcile.NewClient(h.nouvel.URL(), apiKey, nil), Clock: clock,
		Budget: 30, Interval: 10 * time.Second, TTL: 24 * time.Hour, MissedGrace: 2 * time.Minute,
		Logger: zerolog.Nop(), LeaderRetry: 5 * time.Second,
	})
	t.Cleanup(func() { rec.Close() })
	return rec
}

// runPhase starts rec and waits for its phase of simulated time to end.
func runPhase(t *testing.T, rec *reconcile.Reconciler, phase *nouveltest.Phase) {
	t.Helper()
	rec.Start()
	select {
	case <-phase.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("simulated time did not reach the phase's end within 2 real minutes")
	}
}

func (h *handover) requests() []nouveltest.Request {
	reqs := h.nouvel.Requests()
	slices.SortStableFunc(reqs, func(a, b nouveltest.Request) int { return a.Time.Compare(b.Time) })
	return reqs
}

// A 429 pauses every replica: the leader that got it notes the pause, and
// the replica that takes over once it has released the lead sends nothing
// before the Retry-After ends, though the job is overdue. While it does not
// lead yet it shows the pause in its status too.
func TestPollerHandoverKeepsThePause(t *testing.T) {
	const retry = 3 * time.Minute
	h := newHandover(t, testAPIKey)
	h.nouvel.InjectFault(nouveltest.Fault{Status: http.StatusTooManyRequests, RetryAfter: retry, JobID: "job-1"})
	firstPhase := h.clock.Phase(h.start.Add(30*time.Second), nil)
	first := h.replica(t, testAPIKey, firstPhase)
	releaseAt := h.start.Add(time.Minute)
	var followerPause string
	leadAfter := false
	var second *reconcile.Reconciler
	phase := h.clock.Phase(h.start.Add(8*time.Minute), func(now time.Time) {
		st := second.Status().(reconcile.Status)
		switch {
		case now.Before(releaseAt):
			if !st.Leader && st.PausedUntil != nil {
				followerPause = st.PauseReason
			}
		case first != nil:
			first.Close() // releases the lead, as a replica shutting down does
			first = nil
		default:
			leadAfter = leadAfter || st.Leader
		}
	})
	second = h.replica(t, testAPIKey, phase)

	runPhase(t, first, firstPhase)
	reqs := h.requests()
	if len(reqs) != 1 || reqs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("the first leader's requests: got %d, want one, answered 429", len(reqs))
	}
	limited := reqs[0].Time

	runPhase(t, second, phase)
	second.Close()
	if !leadAfter {
		t.Fatal("the second replica never led after the first released the lead")
	}
	if !strings.Contains(followerPause, "429") {
		t.Errorf("the second replica's pause while the first led: got %q, want the 429's", followerPause)
	}
	after := h.requests()[1:]
	if len(after) == 0 {
		t.Fatal("the second leader sent nothing, want polling to resume once the pause ended")
	}
	if got := after[0].Time; got.Before(limited.Add(retry)) {
		t.Errorf("the second leader's first request came %s after the 429, want none within its Retry-After %s",
			got.Sub(limited), retry)
	}
	for _, r := range after {
		if r.Status != http.StatusOK {
			t.Errorf("request at %s answered %d, want 200", r.Time.Sub(h.start), r.Status)
		}
	}
}

// A 401 locks every replica with that key out: the leader that got it
// notes it against the key's fingerprint, the replica running beside it
// shows it on its /readyz reason while following, and sends nothing once
// it leads. A replica with a new key (the operator rotated it) polls.
// Nothing in the store holds the key.
func TestPollerHandoverKeepsTheLockOut(t *testing.T) {
	const oldKey, newKey = "nvl_old_key_0123456789", testAPIKey
	h := newHandover(t, newKey) // Nouvel refuses oldKey
	firstPhase := h.clock.Phase(h.start.Add(30*time.Second), nil)
	first := h.replica(t, oldKey, firstPhase)
	releaseAt := h.start.Add(time.Minute)
	var followerReady error
	leadAfter := false
	var second *reconcile.Reconciler
	phase := h.clock.Phase(h.start.Add(4*time.Minute), func(now time.Time) {
		switch {
		case now.Before(releaseAt):
			if !second.Status().(reconcile.Status).Leader {
				followerReady = second.Ready()
			}
		case first != nil:
			first.Close()
			first = nil
		default:
			leadAfter = leadAfter || second.Status().(reconcile.Status).Leader
		}
	})
	second = h.replica(t, oldKey, phase)
	thirdPhase := h.clock.Phase(h.start.Add(8*time.Minute), nil)
	third := h.replica(t, newKey, thirdPhase)

	runPhase(t, first, firstPhase)
	if reqs := h.requests(); len(reqs) != 1 || reqs[0].Status != http.StatusUnauthorized {
		t.Fatalf("the first leader's requests: got %d, want one, answered 401", len(reqs))
	}
	if err := first.Ready(); err == nil {
		t.Fatal("the first leader's Ready after a 401: got nil, want the lock-out")
	}

	runPhase(t, second, phase)
	if !leadAfter {
		t.Fatal("the second replica never led after the first released the lead")
	}
	if followerReady == nil || !strings.Contains(followerReady.Error(), "401") || strings.Contains(followerReady.Error(), oldKey) {
		t.Errorf("the second replica's Ready while following: got %v, want the 401 and not the key", followerReady)
	}
	if err := second.Ready(); err == nil || !strings.Contains(err.Error(), "polling stopped") {
		t.Errorf("the second replica's Ready once leading: got %v, want polling stopped", err)
	}
	if n := len(h.requests()); n != 1 {
		t.Errorf("requests once the second replica led with the refused key: got %d in all, want still 1", n)
	}
	second.Close()

	// The operator rotates the key: a replica with the new one polls, even
	// one that was running before the old key was refused (a rolling
	// update), which a restart alone would not let through.
	runPhase(t, third, thirdPhase)
	after := h.requests()[1:]
	if len(after) == 0 {
		t.Fatal("the replica with the new key sent nothing, want it to poll")
	}
	for _, r := range after {
		if r.Status != http.StatusOK {
			t.Errorf("request with the new key at %s answered %d, want 200", r.Time.Sub(h.start), r.Status)
		}
	}
	if err := third.Ready(); err != nil {
		t.Errorf("Ready with the new key: got %v, want nil", err)
	}

	conn, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, lockOuts int
	err = conn.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE key LIKE 'poller_lockout_%')
		FROM meta WHERE strpos(key || value, $1) > 0 OR strpos(key || value, $2) > 0 OR key LIKE 'poller_lockout_%'`,
		oldKey, newKey).Scan(&rows, &lockOuts)
	if err != nil {
		t.Fatal(err)
	}
	if rows != lockOuts || lockOuts != 1 {
		t.Errorf("meta rows: %d name a key or a lock-out, %d are lock-outs; want one lock-out row and no key", rows, lockOuts)
	}
}
