package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestReplicaStalledMidCommit: a replica whose network to Postgres stalls
// (a partition: no bytes, no close) in the middle of a commit, holding the
// row locks every write takes, must not stop the other replicas taking
// webhooks: Postgres ends the stranded transaction by itself, so a delivery
// to a healthy replica gets its 200 rather than waiting out its write
// timeout for a 503. When the network comes back, the stalled replica takes
// deliveries again without a restart.
func TestReplicaStalledMidCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary; skipped with -short")
	}
	const (
		senders  = 8
		attempts = 40 // stalls tried until one lands mid-commit
		limit    = 15 * time.Second
	)
	direct := pgSchemaURL(t, "")
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	app := "nh_stalled_" + q.Get("search_path") // to find its sessions
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	proxy := newPGProxy(t, pgBaseHost(t))
	u.Host = proxy.addr
	bin := replicaBinary(t)
	r := spawnReplica(t, bin, u.String()) // through the proxy
	d := spawnReplica(t, bin, direct)
	r.awaitListening(t)
	d.awaitListening(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Getenv("NOUVELHOOK_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	var (
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for w := range senders {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				r.post(fmt.Sprintf("stalled-w%d-%05d", w, n)) // any answer: only the load counts
			}
		})
	}
	defer func() { stop.Store(true); proxy.stall(false); wg.Wait() }()

	// Stall the proxied replica until a stall finds it inside a commit:
	// idle in a transaction, after one of the statements that lock the
	// rows every write shares.
	caught := ""
	for range attempts {
		time.Sleep(100 * time.Millisecond)
		proxy.stall(true)
		time.Sleep(100 * time.Millisecond) // statements already sent land
		err := conn.QueryRow(ctx, `SELECT coalesce(min(query), '') FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'idle in transaction'
			AND (query LIKE 'INSERT INTO counters%' OR query LIKE 'UPDATE feed_counter%'
				OR query LIKE 'UPDATE jobs SET seq%' OR query LIKE 'SELECT pg_notify%')`, app).Scan(&caught)
		if err != nil {
			t.Fatal(err)
		}
		if caught != "" {
			break
		}
		proxy.stall(false)
	}
	if caught == "" {
		t.Skipf("no stall of %d landed inside a commit", attempts)
	}
	stalled := time.Now()

	client := &http.Client{Timeout: 2 * limit}
	c := *d
	c.client = client
	code, ans, err := c.post("direct-while-stalled")
	took := time.Since(stalled)
	if err != nil || code != http.StatusOK {
		t.Errorf("delivery to the healthy replica while the other is stalled inside a commit (%.40q): got %d %s %v after %v, want 200",
			caught, code, ans.raw, err, took.Round(time.Millisecond))
	}
	proxy.stall(false)
	back := time.Now()
	for n := 0; ; n++ {
		code, _, err := r.post(fmt.Sprintf("stalled-back-%04d", n))
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Since(back) > limit {
			t.Fatalf("the stalled replica takes no delivery %v after its network came back: %d %v", limit, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("replica stalled inside a commit (at %.40q): the healthy replica answered %d after %v; the stalled one took deliveries again %v after the stall ended",
		caught, code, took.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
}
