package reconcile_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

const (
	testKey    = "nvl_test_key_0123456789"
	testSecret = "whsec-test"
	publicHook = "https://hooks.example.com/webhooks/nouvel"
)

var simStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// fixture is the reconciler with everything it talks to real: a SQLite
// store in a temp dir, the public webhook server on loopback, and the
// stand-in Nouvel over HTTP, all on one simulated clock.
type fixture struct {
	Clock  *nouveltest.SimClock
	Store  *sqlite.Store
	Nouvel *nouveltest.Server
	Rec    *reconcile.Reconciler
	Public *httptest.Server
	Admin  *httptest.Server
	opts   reconcile.Options
}

// newFixture builds the fixture; nouvelOpts and recOpts adjust the stand-in
// and the reconciler. The reconciler is not started.
func newFixture(t *testing.T, length time.Duration, nouvelOpts func(*nouveltest.Options), recOpts func(*reconcile.Options)) *fixture {
	t.Helper()
	f := &fixture{Clock: nouveltest.NewSimClock(simStart, length)}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{Now: f.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.Store = st
	deps := handler.Deps{
		Store: st, Verifier: handler.NewVerifier([]string{testSecret}), Metrics: handler.NewMetrics(st),
		Logger: zerolog.Nop(), WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20, Now: f.Clock.Now,
	}
	f.Public = httptest.NewServer(handler.NewPublic(deps))
	no := nouveltest.Options{
		APIKey: testKey, WebhookSecret: testSecret, Seed: 7, Now: f.Clock.Now,
		RouteWebhook: func(string) string { return f.Public.URL + "/webhooks/nouvel" },
	}
	if nouvelOpts != nil {
		nouvelOpts(&no)
	}
	f.Nouvel = nouveltest.New(no)
	f.opts = reconcile.Options{
		Store: st, Client: reconcile.NewClient(f.Nouvel.URL(), testKey, nil), Clock: f.Clock,
		Budget: 30, Interval: 10 * time.Second, TTL: 24 * time.Hour, MissedGrace: 2 * time.Minute,
		WebhookURL: publicHook, Logger: zerolog.Nop(),
	}
	if recOpts != nil {
		recOpts(&f.opts)
	}
	f.Rec = reconcile.New(f.opts)
	deps.Poller = f.Rec
	f.Admin = httptest.NewServer(handler.NewAdmin(deps))
	t.Cleanup(func() {
		f.Rec.Close()
		f.Admin.Close()
		f.Public.Close()
		f.Nouvel.Close()
		st.Close()
	})
	return f
}

// track adds jobs to the log as `nouvelhook track` would.
func (f *fixture) track(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, _, err := f.Rec.Track(context.Background(), id); err != nil {
			t.Fatalf("Track(%s): %v", id, err)
		}
	}
}

// runToEnd starts the reconciler and waits until simulated time runs out.
func (f *fixture) runToEnd(t *testing.T) {
	t.Helper()
	f.Rec.Start()
	select {
	case <-f.Clock.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("simulated time did not run out within 2 real minutes")
	}
	f.Rec.Close()
}

func (f *fixture) job(t *testing.T, id string) store.Job {
	t.Helper()
	j, err := f.Store.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}
