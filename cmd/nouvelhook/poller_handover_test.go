package main

import (
	"context"
	"net/http"
	"slices"
	"strconv"
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
	if _, _, err := h.replicaStore(t, "").Track(context.Background(), "job-1", h.start.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return h
}

// replicaStore opens a store of its own on the schema, as a replica does,
// whose connections are named app when it is not "".
func (h *handover) replicaStore(t *testing.T, app string) *postgres.Store {
	t.Helper()
	dbURL := h.dbURL
	if app != "" {
		dbURL += "&application_name=" + app
	}
	st, err := postgres.Open(context.Background(), dbURL, postgres.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// replica returns a reconciler made now (its start, as far as a lock-out
// is concerned), polling with apiKey on a store of its own (see
// replicaStore), on clock.
func (h *handover) replica(t *testing.T, apiKey, app string, clock reconcile.Clock) *reconcile.Reconciler {
	rec := reconcile.New(reconcile.Options{
		Store: h.replicaStore(t, app), Client: reconcile.NewClient(h.nouvel.URL(), apiKey, nil), Clock: clock,
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

// turns is two replicas with the same key polling in turn: the first
// alone until 30 s into simulated time, then the second, made at the
// start like the first, which follows while the first keeps the lead and
// takes it once the first loses it at one minute, until end. The first
// is closed, releasing the lead as a replica shutting down does, or, with
// kill, has its Postgres sessions ended, as when its process is killed.
type turns struct {
	first, second   *reconcile.Reconciler
	firstP, secondP *nouveltest.Phase
	// following is called with the second replica at each move of its
	// clock while the first leads; ledAfter is whether the second led after.
	following func(second *reconcile.Reconciler)
	ledAfter  bool
}

func (h *handover) turns(t *testing.T, apiKey string, kill bool, end time.Time, following func(*reconcile.Reconciler)) *turns {
	tr := &turns{firstP: h.clock.Phase(h.start.Add(30*time.Second), nil), following: following}
	app := "nh_first_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tr.first = h.replica(t, apiKey, app, tr.firstP)
	releaseAt, first := h.start.Add(time.Minute), tr.first
	tr.secondP = h.clock.Phase(end, func(now time.Time) {
		switch {
		case now.Before(releaseAt):
			tr.following(tr.second)
		case first != nil:
			if kill {
				h.endSessions(t, app)
			} else {
				first.Close()
			}
			first = nil
		default:
			tr.ledAfter = tr.ledAfter || tr.second.Status().(reconcile.Status).Leader
		}
	})
	tr.second = h.replica(t, apiKey, "", tr.secondP)
	return tr
}

// endSessions ends every Postgres session named app, and returns once they
// are gone, with their locks.
func (h *handover) endSessions(t *testing.T, app string) {
	conn, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid, 10000))
		FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
	if err != nil || n == 0 {
		t.Errorf("end the sessions of %s: ended %d, %v", app, n, err)
	}
}

// runSecond runs the second replica to the end and checks it took the
// lead.
func (tr *turns) runSecond(t *testing.T) {
	t.Helper()
	runPhase(t, tr.second, tr.secondP)
	if !tr.ledAfter {
		t.Fatal("the second replica never led after the first released the lead")
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
	var followerPause string
	tr := h.turns(t, testAPIKey, false, h.start.Add(8*time.Minute), func(second *reconcile.Reconciler) {
		if st := second.Status().(reconcile.Status); !st.Leader && st.PausedUntil != nil {
			followerPause = st.PauseReason
		}
	})
	runPhase(t, tr.first, tr.firstP)
	reqs := h.requests()
	if len(reqs) != 1 || reqs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("the first leader's requests: got %d, want one, answered 429", len(reqs))
	}
	limited := reqs[0].Time

	tr.runSecond(t)
	tr.second.Close()
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
// it leads, after the first was cut off from Postgres. A replica with a new key (the operator rotated it) polls.
// Nothing in the store holds the key.
func TestPollerHandoverKeepsTheLockOut(t *testing.T) {
	const oldKey, newKey = "nvl_old_key_0123456789", testAPIKey
	h := newHandover(t, newKey) // Nouvel refuses oldKey
	var followerReady error
	tr := h.turns(t, oldKey, true, h.start.Add(4*time.Minute), func(second *reconcile.Reconciler) {
		if !second.Status().(reconcile.Status).Leader {
			followerReady = second.Ready()
		}
	})
	thirdPhase := h.clock.Phase(h.start.Add(8*time.Minute), nil)
	third := h.replica(t, newKey, "", thirdPhase)

	runPhase(t, tr.first, tr.firstP)
	if reqs := h.requests(); len(reqs) != 1 || reqs[0].Status != http.StatusUnauthorized {
		t.Fatalf("the first leader's requests: got %d, want one, answered 401", len(reqs))
	}
	if err := tr.first.Ready(); err == nil {
		t.Fatal("the first leader's Ready after a 401: got nil, want the lock-out")
	}

	tr.runSecond(t)
	if followerReady == nil || !strings.Contains(followerReady.Error(), "401") || strings.Contains(followerReady.Error(), oldKey) {
		t.Errorf("the second replica's Ready while following: got %v, want the 401 and not the key", followerReady)
	}
	if err := tr.second.Ready(); err == nil || !strings.Contains(err.Error(), "polling stopped") {
		t.Errorf("the second replica's Ready once leading: got %v, want polling stopped", err)
	}
	if n := len(h.requests()); n != 1 {
		t.Errorf("requests once the second replica led with the refused key: got %d in all, want still 1", n)
	}
	tr.second.Close()

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
