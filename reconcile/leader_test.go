package reconcile_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// ledStore is the fixture's SQLite store with leadership decided by the
// test, as another replica on a shared store would: this process may lead
// only in [from, until), and the leader before it noted its last request
// half a second before this one took over.
type ledStore struct {
	*sqlite.Store
	now                func() time.Time
	from, until, prior time.Time

	mu     sync.Mutex
	lease  *fakeLease
	tries  []time.Time // every AcquireLeadership
	noted  []time.Time // every NoteRequest that succeeded
	leased time.Time   // when the lease was granted
}

func (s *ledStore) AcquireLeadership(context.Context) (store.Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.tries = append(s.tries, now)
	if now.Before(s.from) || !now.Before(s.until) {
		return nil, false, nil
	}
	s.lease, s.leased = &fakeLease{s: s, lost: make(chan struct{})}, now
	s.prior = now.Add(-500 * time.Millisecond) // the leader before sent one just before it lost the lock
	return s.lease, true, nil
}

// PollerState is the SQLite store's, with the last request the leader
// before this one noted.
func (s *ledStore) PollerState(ctx context.Context, key string) (store.PollerState, error) {
	st, err := s.Store.PollerState(ctx, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	st.LastRequest = s.prior
	return st, err
}

// expire ends the lease once now reaches until, as a lost session would.
func (s *ledStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease != nil && !now.Before(s.until) {
		s.lease.once.Do(func() { close(s.lease.lost) })
	}
}

type fakeLease struct {
	s    *ledStore
	lost chan struct{}
	once sync.Once
}

func (l *fakeLease) Lost() <-chan struct{} { return l.lost }

func (l *fakeLease) NoteRequest(_ context.Context, t time.Time) error {
	select {
	case <-l.lost:
		return errors.New("lease lost")
	default:
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.noted = append(l.s.noted, t)
	return nil
}

func (l *fakeLease) NotePause(ctx context.Context, p store.PollerPause) error {
	return l.note(func(in store.Lease) error { return in.NotePause(ctx, p) })
}

func (l *fakeLease) NoteLockOut(ctx context.Context, key string, lo store.LockOut) error {
	return l.note(func(in store.Lease) error { return in.NoteLockOut(ctx, key, lo) })
}

// note refuses once the lease is lost, and otherwise writes through the
// SQLite store's own lease.
func (l *fakeLease) note(fn func(store.Lease) error) error {
	select {
	case <-l.lost:
		return errors.New("lease lost")
	default:
	}
	in, _, err := l.s.Store.AcquireLeadership(context.Background())
	if err != nil {
		return err
	}
	defer in.Release()
	return fn(in)
}

func (l *fakeLease) Release() error {
	l.once.Do(func() { close(l.lost) })
	return nil
}

// A replica polls only while it leads: none while another does, its first
// request a budget's spacing after the last one the leader before it
// noted, every request noted before it is sent, and none once the lease is
// lost; followers retry at LeaderRetry.
func TestPollsOnlyWhileLeading(t *testing.T) {
	t.Parallel()
	const budget = 30 // 2 s apart
	const retry = 7 * time.Second
	var ls *ledStore
	f := newFixture(t, 8*time.Minute, nil, func(o *reconcile.Options) {
		ls = &ledStore{
			Store: o.Store.(*sqlite.Store), from: simStart.Add(2 * time.Minute), until: simStart.Add(5 * time.Minute),
		}
		o.Store, o.Budget, o.LeaderRetry = ls, budget, retry
	})
	ls.now = f.Clock.Now
	ids := jobIDs(20)
	for _, id := range ids {
		f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 1 << 30})
	}
	f.track(t, ids...)
	// Leader as Status shows it, sampled before, during and after the lease.
	leader := map[string]bool{}
	var rec *reconcile.Reconciler
	c := f.Clock.Phase(simStart.Add(8*time.Minute), func(now time.Time) {
		ls.expire(now)
		switch {
		case now.Before(ls.from):
			leader["before"] = leader["before"] || rec.Status().(reconcile.Status).Leader
		case now.After(ls.from.Add(retry)) && now.Before(ls.until):
			leader["during"] = rec.Status().(reconcile.Status).Leader
		case now.After(ls.until.Add(sweepEvery)): // a later wake-up than the one that lost the lease
			leader["after"] = leader["after"] || rec.Status().(reconcile.Status).Leader
		}
	})
	opts := f.opts
	opts.Clock = c
	rec = reconcile.New(opts)
	rec.Start()
	select {
	case <-c.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("simulated time did not run out within 2 real minutes")
	}
	rec.Close()
	for _, w := range []struct {
		when string
		want bool
	}{{"before", false}, {"during", true}, {"after", false}} {
		if got := leader[w.when]; got != w.want {
			t.Errorf("Status().Leader %s the lease: got %v, want %v", w.when, got, w.want)
		}
	}

	reqs := sortedRequests(f)
	if len(reqs) == 0 {
		t.Fatal("got no requests, want polling while leading")
	}
	spacing := time.Minute / budget
	if first, want := reqs[0].Time, ls.prior.Add(spacing); first.Before(want) || first.Before(ls.leased) {
		t.Errorf("first request at %s, want none before the lease (%s) nor before the last leader's last request plus %s (%s)",
			first.Sub(simStart), ls.leased.Sub(simStart), spacing, want.Sub(simStart))
	}
	if last := reqs[len(reqs)-1].Time; !last.Before(ls.until) {
		t.Errorf("last request at %s, want none at or after the lease was lost at %s", last.Sub(simStart), ls.until.Sub(simStart))
	}
	if least := int(0.9 * float64(budget) * 3); len(reqs) < least {
		t.Errorf("got %d requests in 3 minutes of leading, want at least %d: the leader should spend the budget", len(reqs), least)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.noted) != len(reqs) {
		t.Fatalf("noted %d requests, the stand-in got %d: want every request noted", len(ls.noted), len(reqs))
	}
	for i, r := range reqs {
		if !ls.noted[i].Equal(r.Time) {
			t.Errorf("request %d at %s was noted at %s, want the same time", i+1, r.Time.Sub(simStart), ls.noted[i].Sub(simStart))
		}
	}
	if ls.leased.Sub(ls.from) > retry {
		t.Errorf("took the lead at %s, free from %s: want it within the retry interval %s", ls.leased.Sub(simStart),
			ls.from.Sub(simStart), retry)
	}
	for i := 1; i < len(ls.tries); i++ {
		if gap := ls.tries[i].Sub(ls.tries[i-1]); gap < retry && ls.tries[i].Before(ls.from) {
			t.Errorf("tries to lead at %s and %s, want them %s apart", ls.tries[i-1].Sub(simStart), ls.tries[i].Sub(simStart), retry)
			break
		}
	}
}

// A replica that loses the lead while a poll is in flight cancels it rather
// than waiting for Nouvel's answer, so its request cannot overlap the next
// leader's, and records nothing of it: the job stays due for that leader.
func TestLosingTheLeadCancelsThePollInFlight(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	ended := make(chan error, 1)
	nouvel := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(time.Minute):
			ended <- nil
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"jobId":"job-1","status":"completed","totalProjects":0}`))
		}
	}))
	defer nouvel.Close()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls := &ledStore{Store: st, now: time.Now, until: time.Now().Add(time.Hour)}
	if _, _, err := st.Track(context.Background(), "job-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	rec := reconcile.New(reconcile.Options{
		Store: ls, Client: reconcile.NewClient(nouvel.URL, testKey, nil), Budget: 30,
		Interval: 10 * time.Second, TTL: 24 * time.Hour, MissedGrace: 2 * time.Minute,
		Logger: zerolog.Nop(), LeaderRetry: time.Hour,
	})
	rec.Start()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		rec.Close()
		t.Fatal("no poll reached Nouvel within 30 s")
	}
	ls.mu.Lock()
	lease := ls.lease
	ls.mu.Unlock()
	lease.once.Do(func() { close(lease.lost) }) // the session holding the lead is gone
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the poll ran on to Nouvel's answer after the lead was lost, want it cancelled")
		}
	case <-time.After(30 * time.Second):
		t.Error("the poll in flight was not cancelled within 30 s of losing the lead")
	}
	rec.Close()
	j, err := st.Job(context.Background(), "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if j.PollCount != 0 || j.LastError != "" || j.Terminal {
		t.Errorf("job after the cancelled poll: pollCount %d, lastError %q, terminal %v; want nothing recorded",
			j.PollCount, j.LastError, j.Terminal)
	}
}
