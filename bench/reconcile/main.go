// Command reconcile measures the reconciler against the stand-in Nouvel on
// simulated time, with every webhook dropped so that polling alone ends each
// job. For P jobs tracked at once with budget B it reports how long after a
// job was done at Nouvel it reached the log, and how many requests each job
// cost against its run time divided by the poll interval.
//
//	go run ./bench/reconcile [-budget 30] [-interval 10s] [-pending 5,10,20,40]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reconcile bench:", err)
		os.Exit(1)
	}
}

type result struct {
	latencies           []time.Duration // done at Nouvel → in the log
	requests, allowance float64         // summed over jobs: polls, and run/interval + 1
	maxWindow           int
}

func run() error {
	budget := flag.Int("budget", 30, "NOUVELHOOK_POLL_BUDGET, requests per minute")
	interval := flag.Duration("interval", 10*time.Second, "NOUVELHOOK_POLL_INTERVAL")
	pending := flag.String("pending", "5,10,20,40", "comma-separated numbers of jobs tracked at once")
	minRun := flag.Duration("min-run", 30*time.Second, "shortest job run time")
	maxRun := flag.Duration("max-run", 5*time.Minute, "longest job run time")
	seed := flag.Uint64("seed", 1, "seed for run times")
	flag.Parse()

	fmt.Printf("budget %d/min, interval %s, run times uniform in [%s, %s], every webhook dropped\n\n",
		*budget, *interval, *minRun, *maxRun)
	fmt.Printf("%8s  %12s  %12s  %12s  %14s  %10s  %14s\n", "pending", "p50 delay", "p90 delay", "max delay",
		"req/job", "allowance", "max in 60 s")
	for _, f := range strings.Split(*pending, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 {
			return fmt.Errorf("-pending: %q is not a positive number", f)
		}
		r, err := measure(p, *budget, *interval, *minRun, *maxRun, *seed)
		if err != nil {
			return err
		}
		slices.Sort(r.latencies)
		fmt.Printf("%8d  %12s  %12s  %12s  %14.2f  %10.2f  %14d\n", p,
			pct(r.latencies, 0.5), pct(r.latencies, 0.9), pct(r.latencies, 1),
			r.requests/float64(p), r.allowance/float64(p), r.maxWindow)
	}
	fmt.Printf("\ndelay: from the job being done at Nouvel to its terminal state in the log (target < 2 x interval = %s\n"+
		"       while pending x 3/min stays within the budget). req/job: polls per job; allowance: run/interval + 1.\n", 2**interval)
	return nil
}

func pct(d []time.Duration, q float64) time.Duration {
	return d[min(len(d)-1, int(q*float64(len(d))))].Round(100 * time.Millisecond)
}

func measure(pending, budget int, interval, minRun, maxRun time.Duration, seed uint64) (result, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "nouvelhook-reconcile-bench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	clock := nouveltest.NewSimClock(start, 2*time.Hour)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "nh.db"), sqlite.Options{Now: clock.Now})
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	nouvel := nouveltest.New(nouveltest.Options{APIKey: "bench", Now: clock.Now})
	defer nouvel.Close()
	rec := reconcile.New(reconcile.Options{
		Store: st, Client: reconcile.NewClient(nouvel.URL(), "bench", nil), Clock: clock,
		Budget: budget, Interval: interval, TTL: 24 * time.Hour, MissedGrace: 2 * time.Minute,
		Logger: zerolog.Nop(),
	})
	rng := rand.New(rand.NewPCG(seed, uint64(pending)))
	runs := map[string]time.Duration{}
	for range pending {
		run := minRun + time.Duration(rng.Int64N(int64(maxRun-minRun)+1))
		id := nouvel.AddJob(nouveltest.JobSpec{Runtime: run})
		runs[id] = run
		if _, _, err := rec.Track(ctx, id); err != nil {
			return result{}, err
		}
	}
	rec.Start()
	for done := false; !done; {
		select {
		case <-clock.Done():
			done = true
		case <-time.After(time.Minute):
			return result{}, fmt.Errorf("pending %d: simulated time did not run out", pending)
		}
	}
	rec.Close()

	r := result{maxWindow: maxWindow(nouvel.Requests())}
	for id, run := range runs {
		j, err := st.Job(ctx, id)
		if err != nil {
			return result{}, err
		}
		v, _ := nouvel.Job(id)
		if !j.Terminal || j.TerminalAt == nil {
			return result{}, fmt.Errorf("pending %d: job %s did not end (%s)", pending, id, j.Status)
		}
		r.latencies = append(r.latencies, j.TerminalAt.Sub(v.DoneAt))
		r.requests += float64(v.Polls)
		r.allowance += float64(run)/float64(interval) + 1
	}
	return r, nil
}

// maxWindow is the most requests in any 60 s window [t, t+60 s).
func maxWindow(reqs []nouveltest.Request) int {
	best := 0
	for i := range reqs {
		n := 0
		for j := i; j < len(reqs) && reqs[j].Time.Sub(reqs[i].Time) < time.Minute; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}
