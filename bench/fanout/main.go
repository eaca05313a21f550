// Command fanout measures what idle subscribers of the change feed cost the
// webhook path. It runs `nouvelhook serve` as a process of its own on
// loopback ports and, in one run, alternates timed rounds of the same
// closed-loop webhook load (each delivery a new job, so a new feed event):
//
//   - none: no subscriber;
//   - subs: with subscribers on the admin listener: event streams
//     (text/event-stream), long-polls on /v1/events?wait= that poll again
//     after each answer, and long-polls on jobs that never end.
//
// Subscribers are opened before a subs round and closed after it. Every
// stream and event long-poll checks that it got each event once, in seq
// order, with no gap, and must have caught up with the feed's last seq
// before the round counts. It prints each round, then medians and the ratio
// of subs to none throughput, checked against -min-ratio.
//
// bench/fanout/run.sh builds the binary (and, with BASE=ref, the one at that
// git ref) and runs this; see bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errMissed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "fanout: "+err.Error())
		os.Exit(2)
	}
}

var errMissed = errors.New("targets missed")

type config struct {
	bin, base            string
	label, baseLabel     string
	conns                int
	duration, warmup     time.Duration
	rounds               int
	streams, polls, jobs int
	minRatio             float64
	workdir              string
	keep                 bool
	catchUp              time.Duration
	secret               string
	settle               time.Duration
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.bin, "nouvelhook", "", "the nouvelhook `binary` to measure")
	fs.StringVar(&c.label, "label", "", "a name for this binary in the output (e.g. after)")
	fs.StringVar(&c.base, "base", "", "a second nouvelhook `binary` (e.g. before a change), measured in the same run, rounds interleaved")
	fs.StringVar(&c.baseLabel, "base-label", "base", "a name for the -base binary in the output")
	fs.IntVar(&c.conns, "conns", 64, "webhook `connections`, one closed-loop worker each")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each timed round")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "untimed warm-up before the rounds")
	fs.IntVar(&c.rounds, "rounds", 3, "timed rounds of each kind, alternating; medians are reported")
	fs.IntVar(&c.streams, "sse", 1000, "event streams (text/event-stream on /v1/events) in a subs round")
	fs.IntVar(&c.polls, "event-polls", 500, "long-polls on /v1/events?wait= in a subs round")
	fs.IntVar(&c.jobs, "job-polls", 500, "long-polls on jobs that never end in a subs round")
	fs.Float64Var(&c.minRatio, "min-ratio", 0.8, "target: subs req/s at least this share of none's")
	fs.DurationVar(&c.catchUp, "catch-up", time.Minute, "how long subscribers may take to reach the feed's end after a round")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "pause after opening subscribers, so every long-poll is parked")
	fs.StringVar(&c.workdir, "workdir", "", "`folder` for the DB and log (default: a new temp folder)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work folder")
	c.secret = "fanout-secret-0123456789abcdef"
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.bin == "":
		return c, errors.New("-nouvelhook is required (bench/fanout/run.sh builds it)")
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.rounds < 1 || c.rounds > 20, c.duration < time.Second || c.duration > 2*time.Minute:
		return c, errors.New("-rounds must be 1 to 20 and -duration 1s to 2m")
	case c.streams+c.polls+c.jobs > 15000:
		return c, errors.New("at most 15000 subscribers (ulimit -n is 20000)")
	}
	return c, nil
}

// roundStat is one timed round.
type roundStat struct {
	subs                 bool
	rps                  float64
	p50, p99             time.Duration
	srvCores, drvCores   float64
	otherCores           float64
	failed               int64
	eventsPerSubscriber  int64
	behind, bad, early   int
	firstProblem         string
	elapsed              time.Duration
	subscriberEventTotal int64
}

// target is one binary under test, with its own server, database and load.
type target struct {
	label  string
	srv    *loadgen.Server
	load   *ingest
	runID  string
	rounds []roundStat
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	bins := []string{cfg.bin}
	labels := []string{cfg.label}
	if cfg.base != "" {
		bins, labels = append(bins, cfg.base), append(labels, cfg.baseLabel)
	}
	budget := time.Duration(2*len(bins)*cfg.rounds)*(cfg.duration+cfg.settle+cfg.catchUp) + cfg.warmup + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	dir := cfg.workdir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nouvelhook-fanout-"); err != nil {
			return err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	var targets []*target
	for i, bin := range bins {
		env := []string{"PATH=" + os.Getenv("PATH"), "NOUVEL_WEBHOOK_SECRET=" + cfg.secret,
			"NOUVELHOOK_LISTEN=127.0.0.1:0", "NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0",
			"NOUVELHOOK_DB=" + filepath.Join(dir, fmt.Sprintf("nouvelhook-%d.db", i)), "NOUVELHOOK_LOG_LEVEL=info"}
		for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
			if v := os.Getenv(k); v != "" {
				env = append(env, k+"="+v)
			}
		}
		srv, err := startServer(ctx, bin, env, filepath.Join(dir, fmt.Sprintf("nouvelhook-%d.log", i)))
		if err != nil {
			return err
		}
		defer srv.Stop(syscall.SIGKILL)
		label := labels[i]
		if label == "" {
			label = bin
		}
		runID := bench.RunID()
		targets = append(targets, &target{label: label, srv: srv, runID: runID,
			load: &ingest{addr: srv.Public, secret: cfg.secret, runID: runID}})
	}
	fmt.Fprintf(out, "fanout benchmark: %d webhook connections, %d rounds of %v per kind and binary (alternating), subs = %d event streams + %d event long-polls + %d job long-polls, %d CPUs shared by servers and driver\n",
		cfg.conns, cfg.rounds, cfg.duration, cfg.streams, cfg.polls, cfg.jobs, runtime.NumCPU())
	for _, t := range targets {
		fmt.Fprintf(out, "  %s: pid %d\n", t.label, t.srv.Cmd.Process.Pid)
		if cfg.warmup > 0 {
			r, err := t.load.run(ctx, cfg.conns, cfg.warmup)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  warm-up %-10s %8.0f req/s  failed %d\n", t.label, float64(r.ok)/r.elapsed.Seconds(), r.failed)
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		// Alternate both the binaries and the kinds, so that the noise of
		// a shared machine falls on each alike.
		order := slices.Clone(targets)
		kinds := []bool{false, true}
		if round%2 == 0 {
			slices.Reverse(order)
			kinds = []bool{true, false}
		}
		for _, t := range order {
			for _, withSubs := range kinds {
				st, err := phase(ctx, cfg, t.srv, t.load, t.runID, withSubs)
				if err != nil {
					return fmt.Errorf("%s: %w", t.label, err)
				}
				t.rounds = append(t.rounds, st)
				printRound(out, round, cfg.rounds, t.label, st)
			}
		}
	}
	ok := true
	var ratios []float64
	for _, t := range targets {
		ratio, pass := report(out, cfg, t.label, t.rounds, peakRSS(t.srv))
		ratios, ok = append(ratios, ratio), ok && pass
	}
	if len(ratios) == 2 && ratios[1] > 0 {
		fmt.Fprintf(out, "\nsubs/none ratio, %s / %s: %.2f / %.2f = %.1fx\n", targets[0].label, targets[1].label,
			ratios[0], ratios[1], ratios[0]/ratios[1])
	}
	if !ok {
		return errMissed
	}
	return nil
}

// phase runs one timed round, with subscribers or without.
func phase(ctx context.Context, cfg config, srv *loadgen.Server, g *ingest, runID string, withSubs bool) (roundStat, error) {
	st := roundStat{subs: withSubs}
	var subs *subscribers
	var from int64
	if withSubs {
		var err error
		if from, err = feedLast(ctx, srv.Admin, 0); err != nil {
			return st, err
		}
		if subs, err = openSubscribers(ctx, srv.Admin, runID, from, cfg.streams, cfg.polls, cfg.jobs); err != nil {
			return st, fmt.Errorf("open subscribers: %w", err)
		}
		defer subs.close()
		time.Sleep(cfg.settle)
	}
	srv0, drv0, all0 := cpuTime(srv), loadgen.SelfCPU(), loadgen.MachineCPU()
	r, err := g.run(ctx, cfg.conns, cfg.duration)
	if err != nil {
		return st, err
	}
	srv1, drv1, all1 := cpuTime(srv), loadgen.SelfCPU(), loadgen.MachineCPU()
	secs := r.elapsed.Seconds()
	st.rps, st.failed, st.elapsed = float64(r.ok)/secs, r.failed, r.elapsed
	st.p50, st.p99 = percentile(r.latencies, 0.5), percentile(r.latencies, 0.99)
	st.srvCores = (srv1 - srv0).Seconds() / secs
	st.drvCores = (drv1 - drv0).Seconds() / secs
	st.otherCores = max(0, ((all1-all0)-(srv1-srv0)-(drv1-drv0)).Seconds()/secs)
	if r.firstErr != "" {
		st.firstProblem = "webhook: " + r.firstErr
	}
	if !withSubs {
		return st, nil
	}
	last, err := feedLast(ctx, srv.Admin, from)
	if err != nil {
		return st, err
	}
	st.behind = subs.caughtUp(ctx, last, cfg.catchUp)
	st.early = int(subs.early.Load())
	st.eventsPerSubscriber = last - from
	for _, f := range append(append([]*follower(nil), subs.streams...), subs.polls...) {
		st.subscriberEventTotal += f.events.Load()
		if p := f.problem(); p != "" {
			st.bad++
			if st.firstProblem == "" {
				st.firstProblem = p
			}
		} else if f.events.Load() != last-from {
			st.bad++
			if st.firstProblem == "" {
				st.firstProblem = fmt.Sprintf("got %d events, want %d", f.events.Load(), last-from)
			}
		}
	}
	return st, nil
}

func printRound(w io.Writer, round, rounds int, label string, s roundStat) {
	kind := "none"
	if s.subs {
		kind = "subs"
	}
	fmt.Fprintf(w, "  round %d/%d %-10s %-4s %8.0f req/s  p50 %7.2fms  p99 %7.2fms  server %.2f cores  driver %.2f  other %.2f  failed %d",
		round, rounds, label, kind, s.rps, ms(s.p50), ms(s.p99), s.srvCores, s.drvCores, s.otherCores, s.failed)
	if s.subs {
		fmt.Fprintf(w, "  | %d events each, %d delivered to subscribers, %d wrong, %d behind, %d job polls answered early",
			s.eventsPerSubscriber, s.subscriberEventTotal, s.bad, s.behind, s.early)
	}
	fmt.Fprintln(w)
	if s.firstProblem != "" {
		fmt.Fprintf(w, "    first problem: %s\n", s.firstProblem)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(rounds []roundStat, subs bool, f func(roundStat) float64) float64 {
	var v []float64
	for _, r := range rounds {
		if r.subs == subs {
			v = append(v, f(r))
		}
	}
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// report prints one binary's medians and verdicts, and returns its subs/none
// ratio and whether every target was met.
func report(w io.Writer, cfg config, label string, rounds []roundStat, peak int64) (float64, bool) {
	fmt.Fprintf(w, "\n[%s] median of %d rounds each:\n", label, cfg.rounds)
	fmt.Fprintf(w, "  %-5s %9s %9s %9s %12s %12s %12s\n", "kind", "req/s", "p50", "p99", "server cores", "driver cores", "other cores")
	for _, subs := range []bool{false, true} {
		kind := "none"
		if subs {
			kind = "subs"
		}
		m := func(f func(roundStat) float64) float64 { return median(rounds, subs, f) }
		fmt.Fprintf(w, "  %-5s %9.0f %7.2fms %7.2fms %12.2f %12.2f %12.2f\n", kind,
			m(func(r roundStat) float64 { return r.rps }),
			m(func(r roundStat) float64 { return ms(r.p50) }),
			m(func(r roundStat) float64 { return ms(r.p99) }),
			m(func(r roundStat) float64 { return r.srvCores }),
			m(func(r roundStat) float64 { return r.drvCores }),
			m(func(r roundStat) float64 { return r.otherCores }))
	}
	none := median(rounds, false, func(r roundStat) float64 { return r.rps })
	with := median(rounds, true, func(r roundStat) float64 { return r.rps })
	ratio := 0.0
	if none > 0 {
		ratio = with / none
	}
	fmt.Fprintf(w, "  ratio (subs / none req/s): %.2f   server peak RSS %.1f MB\n\n", ratio, float64(peak)/1e6)

	var failed, bad, behind, early int64
	for _, r := range rounds {
		failed += r.failed
		bad += int64(r.bad)
		behind += int64(r.behind)
		early += int64(r.early)
	}
	ok := true
	check := func(pass bool, format string, args ...any) {
		verdict := "PASS"
		if !pass {
			verdict, ok = "FAIL", false
		}
		fmt.Fprintf(w, "  %s  %s\n", verdict, fmt.Sprintf(format, args...))
	}
	check(ratio >= cfg.minRatio, "subscribers cost at most %.0f%% of ingest: subs/none = %.2f", (1-cfg.minRatio)*100, ratio)
	check(bad == 0 && behind == 0, "every stream and event long-poll got every event once, in order, and caught up: %d wrong, %d behind", bad, behind)
	check(early == 0, "no long-poll on a job that never ends was answered: %d were", early)
	check(failed == 0, "every webhook answered 200 as new: %d failed", failed)
	return ratio, ok
}
