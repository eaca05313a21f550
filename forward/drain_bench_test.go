package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// drainJobs is the backlog BenchmarkDrain forwards each round.
const drainJobs = 10_000

// BenchmarkDrain: the forwarder drains a backlog of drainJobs ended jobs
// from a real SQLite log, at concurrency 4, to an app that answers 200 at
// once. Each round queues every job again with one replay and runs one
// forwarder until the queue is empty; it reports forwards/s.
func BenchmarkDrain(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "log.db"), sqlite.Options{Forward: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	endJobs(b, st, drainJobs)

	var got atomic.Int64
	app := countingApp(&got)
	defer app.Close()

	var took time.Duration
	var claims int64
	for b.Loop() {
		b.StopTimer()
		if _, err := st.ReplayForwards(ctx, time.Now(), 0); err != nil {
			b.Fatal(err)
		}
		got.Store(0)
		cs := &claimCounter{Store: st}
		f, err := New(Options{Store: cs, URL: app.URL + "/hooks", NouvelSecret: testSecret, Key: testKey,
			Schedule: []time.Duration{time.Minute}, Timeout: 5 * time.Second, Concurrency: 4,
			Logger: zerolog.Nop(), Version: testVersion})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		f.Start()
		waitDrained(b, st, &got)
		took += time.Since(start)
		b.StopTimer()
		f.Close()
		claims += cs.calls.Load()
		b.StartTimer()
	}
	b.ReportMetric(float64(drainJobs*b.N)/took.Seconds(), "forwards/s")
	b.ReportMetric(float64(claims)/float64(drainJobs*b.N), "claims/forward")
}

// claimCounter counts the round trips that claim forwards, and those of
// them that claimed some.
type claimCounter struct {
	store.Store
	calls, claimed atomic.Int64
}

func (c *claimCounter) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	cl, err := c.Store.ClaimForwards(ctx, now, n, lease, ordered)
	c.calls.Add(1)
	if len(cl) > 0 {
		c.claimed.Add(1)
	}
	return cl, err
}

// endJobs ends n jobs on st as verified webhooks would, from a few writers
// at once so that the store's writer commits them in groups.
func endJobs(b *testing.B, st store.Store, n int) {
	b.Helper()
	ctx := context.Background()
	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if err := endJob(ctx, st, fmt.Sprintf("drain-%05d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitDrained waits until the app has had every forward and the store
// shows none left to send.
func waitDrained(b *testing.B, st store.Store, got *atomic.Int64) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if got.Load() >= drainJobs {
			fs, err := st.ForwardStats(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if fs.Depth == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the app had %d of %d forwards after 2 minutes", got.Load(), drainJobs)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// endJob ends the job id on st as a verified webhook would.
func endJob(ctx context.Context, st store.Store, id string) error {
	r := &store.Report{JobID: id, Status: store.StatusCompleted, TotalProjects: 1, CompletedProjects: 1,
		Projects: []store.Project{{ProjectID: id + "-p", Title: "a title", Status: store.StatusCompleted,
			VideoURL: "https://cdn.example/" + id + ".mp4"}}}
	body, _ := json.Marshal(r)
	_, err := st.RecordWebhook(ctx, store.WebhookDelivery{Body: body, ReceivedAt: time.Now(), Attempt: 1, JobID: id, Report: r})
	return err
}

// countingApp is an app that answers every forward 200 at once and counts
// them in got.
func countingApp(got *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
}

// BenchmarkIngest: webhooks end new jobs on a real SQLite log from 64
// goroutines at once, as the webhook path would under load: with
// forwarding off; on, with no forwarder running (the cost of queueing each
// end alone); on, with a forwarder sending to an app that answers 200 at
// once; and busy, the same giving way as serve does (Options.Busy while 8
// or more webhooks are in flight). It reports the forwards the app got per
// webhook. Run it with
// -benchtime=100000x -cpuprofile to see where forwarding's cost on ingest
// goes (a count, not a time, so that the profile holds one run).
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"off", "queue", "on", "busy"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "log.db"), sqlite.Options{Forward: mode != "off"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var got, inflight atomic.Int64
			calls := &callCounter{Store: st}
			if mode == "on" || mode == "busy" {
				app := countingApp(&got)
				defer app.Close()
				f, err := New(Options{Store: calls, URL: app.URL + "/hooks", NouvelSecret: testSecret, Key: testKey,
					Schedule: []time.Duration{time.Minute}, Timeout: 5 * time.Second, Concurrency: 4,
					Logger: zerolog.Nop(), Version: testVersion, Busy: func() bool { return mode == "busy" && inflight.Load() >= 8 }})
				if err != nil {
					b.Fatal(err)
				}
				f.Start()
				defer f.Close()
			}
			var n atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					inflight.Add(1)
					err := endJob(ctx, st, fmt.Sprintf("ingest-%07d", n.Add(1)))
					inflight.Add(-1)
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(got.Load())/float64(b.N), "forwards/op")
			if fwd := float64(got.Load()); fwd > 0 {
				b.ReportMetric(float64(calls.claims.Load())/fwd, "claims/forward")
				b.ReportMetric(float64(calls.reads.Load())/fwd, "reads/forward")
				b.ReportMetric(float64(calls.feed.Load())/fwd, "feedwaits/forward")
			}
		})
	}
}

// callCounter counts the forwarder's store calls besides its results: the
// claims, the reads of the queue and of the feed's last seq, and the waits
// on the feed.
type callCounter struct {
	store.Store
	claims, reads, feed atomic.Int64
}

func (c *callCounter) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	c.claims.Add(1)
	return c.Store.ClaimForwards(ctx, now, n, lease, ordered)
}

func (c *callCounter) NextForwardAt(ctx context.Context) (time.Time, bool, error) {
	c.reads.Add(1)
	return c.Store.NextForwardAt(ctx)
}

func (c *callCounter) Stats(ctx context.Context) (store.Stats, error) {
	c.reads.Add(1)
	return c.Store.Stats(ctx)
}

func (c *callCounter) WaitFeed(ctx context.Context, after int64, limit int) ([]store.FeedEvent, int64, error) {
	c.feed.Add(1)
	return c.Store.WaitFeed(ctx, after, limit)
}
