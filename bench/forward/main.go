// Command forward benchmarks forwarding to the app. It runs `nouvelhook
// serve` as processes of their own on loopback ports, with a local app (in
// this process) that answers every forward 200 at once, and measures:
//
//   - drain: a backlog of -jobs ended jobs (made through the webhook path
//     with forwarding off, then queued at once by POST /v1/forwards/replay
//     with it on) until the queue records every one delivered, in
//     forwards/s, for SQLite at the default concurrency, SQLite in ordered
//     mode, and Postgres (-targets);
//   - ingest: webhook req/s of the same closed-loop load as bench/cmd/load
//     on two SQLite servers side by side, one forwarding each new job to
//     the app and one not, in alternating rounds; with -base BIN, a third
//     server, that binary forwarding, takes its turn in the same rounds,
//     for a before and after in one run.
//
// Every load is bounded by a count and a time, and the whole run by
// -max-time. `bash bench/run.sh forward` builds the binary and runs this; see
// bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

func main() { loadgen.Main("forward", run) }

const secret = "bench-secret-0123456789abcdef"

type config struct {
	nouvelhook string
	// base, when set, is a second nouvelhook binary (another tree's) that
	// the ingest rounds also run with forwarding on, beside the first.
	base        string
	targets     []string
	jobs        int
	drainRounds int
	drainLimit  time.Duration

	conns        int
	ingestRounds int
	duration     time.Duration
	warmup       time.Duration
	maxRequests  int64
	settle       time.Duration

	pgURL   string
	workdir string
	keep    bool
	maxTime time.Duration

	minDrain, minOrdered, minIngest float64

	// appHang has the app hold every forward unanswered during the ingest
	// comparison: the queue fills as with forwarding on, and the forwarder
	// sits idle, which tells the hot path's cost from the forwarder's.
	appHang bool
}

// knownTargets are the drain targets, in the order they run.
var knownTargets = []string{"sqlite", "ordered", "pg"}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("forward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: forward -nouvelhook BIN [flags]\n\nBenchmarks forwarding to a local app; `bash bench/run.sh forward` builds the binaries and runs it.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.nouvelhook, "nouvelhook", "", "the nouvelhook `binary` (go build ./cmd/nouvelhook)")
	fs.StringVar(&c.base, "base", "", "a second nouvelhook `binary` (another tree's) that the ingest rounds also run with forwarding on, in turn with the others, for a before/after in one run; its ratio is to the first binary's forwarding off")
	targets := fs.String("targets", "sqlite,ordered,pg", "comma-separated drain `targets`: sqlite (default concurrency), ordered (SQLite, NOUVELHOOK_FORWARD_ORDERED=true), pg (Postgres, default concurrency); empty for none")
	fs.IntVar(&c.jobs, "jobs", 10000, "ended jobs in the backlog each drain target forwards")
	fs.IntVar(&c.drainRounds, "drain-rounds", 3, "drains per target (each replays the whole backlog); the median is reported")
	fs.DurationVar(&c.drainLimit, "drain-limit", 2*time.Minute, "the longest one drain may take")
	fs.IntVar(&c.conns, "conns", 64, "concurrent keep-alive `connections` of the webhook load")
	fs.IntVar(&c.ingestRounds, "ingest-rounds", 5, "timed ingest rounds per server, alternating; 0 skips the ingest comparison")
	fs.DurationVar(&c.duration, "duration", 6*time.Second, "length of each ingest round")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "untimed ingest warm-up per server")
	fs.Int64Var(&c.maxRequests, "max-requests", 2_000_000, "cap on requests per ingest round, beside the duration")
	fs.DurationVar(&c.settle, "settle", time.Minute, "after a round with forwarding on, wait at most this long for its queue to empty before the next round")
	fs.StringVar(&c.pgURL, "pg", "", "Postgres `URL` the pg target makes its schema in (default: NOUVELHOOK_TEST_POSTGRES, else "+loadgen.DefaultPostgres+")")
	fs.StringVar(&c.workdir, "workdir", "", "`folder` for the databases and server logs (default: a new temp folder)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work folder and the Postgres schema")
	fs.DurationVar(&c.maxTime, "max-time", 20*time.Minute, "the whole run's time bound")
	fs.Float64Var(&c.minDrain, "min-drain", 1000, "target: SQLite forwards/s at the default concurrency")
	fs.Float64Var(&c.minOrdered, "min-ordered", 300, "target: SQLite forwards/s in ordered mode")
	fs.Float64Var(&c.minIngest, "min-ingest-ratio", 0.9, "target: ingest req/s with forwarding on, as a share of off")
	fs.BoolVar(&c.appHang, "app-hang", false, "during the ingest comparison the app holds every forward unanswered (until the forward times out), so the forwarder sits idle: the cost of queueing each end alone")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, name := range strings.Split(*targets, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(knownTargets, name) {
			return c, fmt.Errorf("-targets: unknown target %q (want sqlite, ordered, pg)", name)
		}
		if !slices.Contains(c.targets, name) {
			c.targets = append(c.targets, name)
		}
	}
	slices.SortFunc(c.targets, func(a, b string) int { return slices.Index(knownTargets, a) - slices.Index(knownTargets, b) })
	if c.pgURL == "" {
		c.pgURL = getenv("NOUVELHOOK_TEST_POSTGRES")
	}
	if c.pgURL == "" {
		c.pgURL = loadgen.DefaultPostgres
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.nouvelhook == "":
		return c, errors.New("-nouvelhook is required (bash bench/run.sh forward builds it)")
	case c.jobs < 1 || c.jobs > 1_000_000:
		return c, errors.New("-jobs must be 1 to 1000000")
	case c.drainRounds < 1 || c.drainRounds > 20, c.ingestRounds < 0 || c.ingestRounds > 20:
		return c, errors.New("-drain-rounds must be 1 to 20, -ingest-rounds 0 to 20")
	case c.conns < 1 || c.conns > 4096:
		return c, errors.New("-conns must be 1 to 4096")
	case c.duration < 100*time.Millisecond || c.duration > 5*time.Minute || c.warmup < 0 || c.warmup > time.Minute:
		return c, errors.New("-duration must be 100ms to 5m, -warmup 0 to 1m")
	case c.maxRequests < 1 || c.drainLimit <= 0 || c.settle < 0 || c.maxTime <= 0:
		return c, errors.New("-max-requests, -drain-limit and -max-time must be positive, -settle not negative")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.maxTime)
	defer cancel()
	dir := cfg.workdir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nouvelhook-forward-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if cfg.keep || cfg.workdir != "" {
		fmt.Fprintf(stdout, "work folder: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	app, err := startApp(ctx)
	if err != nil {
		return err
	}
	defer app.close()
	b := &benchRun{cfg: cfg, getenv: getenv, dir: dir, out: stdout, app: app}
	defer b.cleanup()
	fmt.Fprintf(stdout, "nouvelhook forwarding benchmark: app on %s answering 200 at once; %d CPUs shared by nouvelhook, Postgres, the app and the load generator\n",
		app.url, numCPU())
	drains := map[string][]float64{}
	for _, name := range cfg.targets {
		rates, err := b.drainTarget(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		drains[name] = rates
	}
	var ingest map[string]*ingestSide
	if cfg.ingestRounds > 0 {
		if ingest, err = b.ingestComparison(ctx); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	if !b.report(drains, ingest) {
		return loadgen.ErrTargetsMissed
	}
	return nil
}

// benchRun is one run: its settings, the app, and what it started.
type benchRun struct {
	cfg    config
	getenv func(string) string
	dir    string
	out    io.Writer
	app    *app
	srvs   []*loadgen.Server
	pgs    []*loadgen.PGSchema
	failed []string // checks that failed
}

func (b *benchRun) cleanup() {
	for _, s := range b.srvs {
		s.Stop(syscall.SIGKILL)
	}
	for _, p := range b.pgs {
		if b.cfg.keep {
			fmt.Fprintf(b.out, "kept schema %s\n", p.Schema)
		} else if err := p.Drop(loadgen.DirectURL(b.cfg.pgURL)); err != nil {
			fmt.Fprintf(b.out, "drop schema %s: %v\n", p.Schema, err)
		}
	}
}

// check records a failed check, printed with the report.
func (b *benchRun) check(ok bool, format string, args ...any) {
	if !ok {
		b.failed = append(b.failed, fmt.Sprintf(format, args...))
	}
}

// start runs `nouvelhook serve` on db with the given settings, the
// environment as a user would set it.
func (b *benchRun) start(ctx context.Context, name, db string, env ...string) (*loadgen.Server, error) {
	return b.startBin(ctx, b.cfg.nouvelhook, name, db, env...)
}

// startBin is start with the binary bin.
func (b *benchRun) startBin(ctx context.Context, bin, name, db string, env ...string) (*loadgen.Server, error) {
	full := []string{"PATH=" + b.getenv("PATH")}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v := b.getenv(k); v != "" {
			full = append(full, k+"="+v)
		}
	}
	full = append(full, "NOUVEL_WEBHOOK_SECRET="+secret, "NOUVELHOOK_LISTEN=127.0.0.1:0",
		"NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0", "NOUVELHOOK_DB="+db, "NOUVELHOOK_LOG_LEVEL=info")
	srv, err := loadgen.StartServer(ctx, name, bin, []string{"serve"}, append(full, env...),
		filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	b.srvs = append(b.srvs, srv)
	if srv.Admin == "" {
		return nil, fmt.Errorf("%s did not log its admin address", name)
	}
	return srv, nil
}

// stop ends srv with SIGTERM, which must exit 0.
func (b *benchRun) stop(srv *loadgen.Server) error {
	b.srvs = slices.DeleteFunc(b.srvs, func(s *loadgen.Server) bool { return s == srv })
	if err := srv.Stop(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", srv.Name, err)
	}
	return nil
}

// drainTarget fills a log with cfg.jobs ended jobs through the webhook path
// with forwarding off, restarts the server with it on, and drains the
// whole backlog cfg.drainRounds times, each queued at once by a replay. It
// returns each drain's forwards/s.
func (b *benchRun) drainTarget(ctx context.Context, name string) ([]float64, error) {
	db := filepath.Join(b.dir, name+".db")
	env := []string{"NOUVELHOOK_FORWARD_URL=" + b.app.url}
	switch name {
	case "ordered":
		env = append(env, "NOUVELHOOK_FORWARD_ORDERED=true")
	case "pg":
		pg, err := loadgen.NewPGSchema(ctx, loadgen.DirectURL(b.cfg.pgURL), "fwd")
		if err != nil {
			return nil, err
		}
		b.pgs = append(b.pgs, pg)
		db = pg.DBURL
	}
	fill, err := b.start(ctx, name+"-fill", db)
	if err != nil {
		return nil, err
	}
	workers := loadgen.NewWorkers(min(b.cfg.conns, 32), bench.RunID())
	r, err := loadgen.RunPhase(ctx, loadgen.Spec{Addrs: []string{fill.Public}, Secret: secret, Duration: 5 * time.Minute,
		MaxRequests: int64(b.cfg.jobs), Timeout: 5 * time.Second, CheckDup: true}, workers)
	if err != nil {
		return nil, err
	}
	if r.OKNew != int64(b.cfg.jobs) {
		return nil, fmt.Errorf("backlog: %d of %d webhooks acknowledged (first failure: %s)", r.OKNew, b.cfg.jobs, r.FirstError)
	}
	fmt.Fprintf(b.out, "\n%s: %d jobs ended through the webhook path with forwarding off (%.0f req/s)\n",
		name, b.cfg.jobs, float64(r.OK)/r.Elapsed.Seconds())
	if err := b.stop(fill); err != nil {
		return nil, err
	}
	srv, err := b.start(ctx, name, db, env...)
	if err != nil {
		return nil, err
	}
	var rates []float64
	for round := 1; round <= b.cfg.drainRounds; round++ {
		rate, err := b.drain(ctx, srv, name, round)
		if err != nil {
			return nil, err
		}
		rates = append(rates, rate)
	}
	return rates, b.stop(srv)
}

// drain queues every job again with one replay and waits until the queue
// records them all delivered.
func (b *benchRun) drain(ctx context.Context, srv *loadgen.Server, name string, round int) (float64, error) {
	hits0, _ := b.app.counts()
	cpu0, _ := srv.CPUTime()
	all0 := loadgen.MachineCPU()
	start := time.Now()
	var ans struct {
		Queued int `json:"queued"`
	}
	if err := adminJSON(ctx, http.MethodPost, srv.Admin, "/v1/forwards/replay", `{"after":0}`, &ans); err != nil {
		return 0, err
	}
	if ans.Queued != b.cfg.jobs {
		return 0, fmt.Errorf("replay queued %d, want %d", ans.Queued, b.cfg.jobs)
	}
	deadline := start.Add(b.cfg.drainLimit)
	var st forwardStats
	for {
		if err := adminJSON(ctx, http.MethodGet, srv.Admin, "/v1/stats", "", &st); err != nil {
			return 0, err
		}
		if st.Forwards == nil {
			return 0, errors.New("GET /v1/stats has no forwards: is forwarding on?")
		}
		if st.Forwards.ByState["delivered"] == b.cfg.jobs {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("drain %d: %v delivered after %v (limit)", round, st.Forwards.ByState, b.cfg.drainLimit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	hits1, bad := b.app.counts()
	cpu1, _ := srv.CPUTime()
	all1 := loadgen.MachineCPU()
	sent := hits1 - hits0
	b.check(sent >= int64(b.cfg.jobs) && bad == 0, "%s drain %d: the app got %d forwards for %d jobs, %d of them bad", name, round, sent, b.cfg.jobs, bad)
	rate := float64(b.cfg.jobs) / elapsed.Seconds()
	other := "other"
	if name == "pg" {
		other = "other (Postgres's included)"
	}
	fmt.Fprintf(b.out, "  drain %d/%d  %-8s %6d forwards in %7s  %7.0f forwards/s  app got %d (%d repeats)  srv %.2f cores  %s %.2f cores\n",
		round, b.cfg.drainRounds, name, b.cfg.jobs, elapsed.Round(time.Millisecond), rate, sent, sent-int64(b.cfg.jobs),
		(cpu1-cpu0).Seconds()/elapsed.Seconds(), other, max(0, (all1-all0-(cpu1-cpu0)).Seconds()/elapsed.Seconds()))
	return rate, nil
}

// baseOn names the -base binary's side of the ingest rounds.
const baseOn = "base, fwd on"

// ingestSide is what the ingest rounds measured of one server.
type ingestSide struct {
	rps    []float64 // each round's req/s
	cpuReq []float64 // each round's server CPU per request, in µs
}

// ingestComparison runs the webhook load against two SQLite servers, one
// forwarding to the app and one not, in alternating rounds, and with -base
// a third, the base binary forwarding, each side going first in turn. It
// returns each round's figures by server.
func (b *benchRun) ingestComparison(ctx context.Context) (map[string]*ingestSide, error) {
	type side struct {
		name    string
		srv     *loadgen.Server
		workers []*loadgen.Worker
	}
	off, err := b.start(ctx, "ingest-off", filepath.Join(b.dir, "ingest-off.db"))
	if err != nil {
		return nil, err
	}
	on, err := b.start(ctx, "ingest-on", filepath.Join(b.dir, "ingest-on.db"), "NOUVELHOOK_FORWARD_URL="+b.app.url)
	if err != nil {
		return nil, err
	}
	if b.cfg.appHang {
		b.app.hang.Store(true)
		defer b.app.hang.Store(false)
		fmt.Fprintln(b.out, "(-app-hang: the app holds every forward unanswered; the forwarder sits idle)")
	}
	sides := []*side{
		{name: "forwarding off", srv: off, workers: loadgen.NewWorkers(b.cfg.conns, bench.RunID())},
		{name: "forwarding on", srv: on, workers: loadgen.NewWorkers(b.cfg.conns, bench.RunID())},
	}
	forwarding := []*loadgen.Server{on}
	if b.cfg.base != "" {
		base, err := b.startBin(ctx, b.cfg.base, "ingest-base-on", filepath.Join(b.dir, "ingest-base-on.db"),
			"NOUVELHOOK_FORWARD_URL="+b.app.url)
		if err != nil {
			return nil, err
		}
		sides = append(sides, &side{name: baseOn, srv: base, workers: loadgen.NewWorkers(b.cfg.conns, bench.RunID())})
		forwarding = append(forwarding, base)
	}
	phase := func(s *side, d time.Duration) (*loadgen.Result, error) {
		return loadgen.RunPhase(ctx, loadgen.Spec{Addrs: []string{s.srv.Public}, Secret: secret, Duration: d,
			MaxRequests: b.cfg.maxRequests, Timeout: 5 * time.Second, CheckDup: true}, s.workers)
	}
	fmt.Fprintf(b.out, "\ningest: %d connections, %d rounds of %v per server (alternating), each delivery a new job; the app answers 200 at once\n",
		b.cfg.conns, b.cfg.ingestRounds, b.cfg.duration)
	var failures int64
	for _, s := range sides {
		if b.cfg.warmup > 0 {
			r, err := phase(s, b.cfg.warmup)
			if err != nil {
				return nil, err
			}
			failures += r.Failures()
		}
	}
	for _, srv := range forwarding {
		if err := b.settle(ctx, srv); err != nil {
			return nil, err
		}
	}
	rates := map[string]*ingestSide{}
	for _, s := range sides {
		rates[s.name] = &ingestSide{}
	}
	for round := 1; round <= b.cfg.ingestRounds; round++ {
		// Each side goes first in turn, and with two sides the order
		// alternates: forward in odd rounds, backward in even ones.
		order := slices.Clone(sides)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		if len(order) > 2 {
			k := (round - 1) % len(order)
			order = append(order[k:], order[:k]...)
		}
		for _, s := range order {
			var st0 forwardStats
			fwd := slices.Contains(forwarding, s.srv)
			if fwd {
				if err := adminJSON(ctx, http.MethodGet, s.srv.Admin, "/v1/stats", "", &st0); err != nil {
					return nil, err
				}
			}
			cpu0, _ := s.srv.CPUTime()
			load0, all0 := loadgen.SelfCPU(), loadgen.MachineCPU()
			r, err := phase(s, b.cfg.duration)
			if err != nil {
				return nil, err
			}
			cpu1, _ := s.srv.CPUTime()
			load1, all1 := loadgen.SelfCPU(), loadgen.MachineCPU()
			failures += r.Failures()
			secs := r.Elapsed.Seconds()
			rps := float64(r.OK) / secs
			cpu := cpu1 - cpu0
			rates[s.name].rps = append(rates[s.name].rps, rps)
			if r.OK > 0 {
				rates[s.name].cpuReq = append(rates[s.name].cpuReq, float64(cpu.Microseconds())/float64(r.OK))
			}
			lat := slices.Clone(r.Latencies)
			slices.Sort(lat)
			p99 := time.Duration(0)
			if len(lat) > 0 {
				p99 = lat[min(len(lat)-1, len(lat)*99/100)]
			}
			line := fmt.Sprintf("  round %d/%d  %-15s %7.0f req/s  p99 %7.2fms  srv %.2f cores %4.0fµs/req  load gen %.2f  other %.2f cores  failed %d",
				round, b.cfg.ingestRounds, s.name, rps, float64(p99)/1e6, cpu.Seconds()/secs, float64(cpu.Microseconds())/max(1, float64(r.OK)),
				(load1-load0).Seconds()/secs, max(0, (all1-all0-cpu-(load1-load0)).Seconds()/secs), r.Failures())
			if fwd {
				var st1 forwardStats
				if err := adminJSON(ctx, http.MethodGet, s.srv.Admin, "/v1/stats", "", &st1); err != nil {
					return nil, err
				}
				line += fmt.Sprintf("  forwarded %.0f/s, %d waiting at the end",
					float64(st1.Forwards.ByState["delivered"]-st0.Forwards.ByState["delivered"])/secs, st1.Forwards.Depth)
			}
			fmt.Fprintln(b.out, line)
			if fwd {
				if err := b.settle(ctx, s.srv); err != nil {
					return nil, err
				}
			}
		}
	}
	b.check(failures == 0, "ingest: %d requests did not get the expected 200", failures)
	return rates, nil
}

// settle waits, at most cfg.settle, until srv's queue is empty, so that a
// round with forwarding off does not share the machine with the backlog of
// the round before.
func (b *benchRun) settle(ctx context.Context, srv *loadgen.Server) error {
	if b.cfg.appHang {
		return nil // nothing drains
	}
	start := time.Now()
	for {
		var st forwardStats
		if err := adminJSON(ctx, http.MethodGet, srv.Admin, "/v1/stats", "", &st); err != nil {
			return err
		}
		if st.Forwards == nil {
			return errors.New("GET /v1/stats has no forwards: is forwarding on?")
		}
		if st.Forwards.Depth == 0 {
			return nil
		}
		if time.Since(start) > b.cfg.settle {
			fmt.Fprintf(b.out, "    (%d forwards still waiting after %v; going on)\n", st.Forwards.Depth, b.cfg.settle)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// report prints the medians and checks the targets.
func (b *benchRun) report(drains map[string][]float64, ingest map[string]*ingestSide) bool {
	fmt.Fprintf(b.out, "\nmedians:\n")
	ok := true
	verdict := func(pass bool, format string, args ...any) {
		v := "PASS"
		if !pass {
			v, ok = "FAIL", false
		}
		fmt.Fprintf(b.out, "  %s  %s\n", v, fmt.Sprintf(format, args...))
	}
	for _, name := range b.cfg.targets {
		fmt.Fprintf(b.out, "  drain %-8s %7.0f forwards/s  (%d jobs, %d drains)\n", name, median(drains[name]), b.cfg.jobs, len(drains[name]))
	}
	var ratio float64
	if ingest != nil {
		off, on := ingest["forwarding off"], ingest["forwarding on"]
		offRPS, onRPS := median(off.rps), median(on.rps)
		if offRPS > 0 {
			ratio = onRPS / offRPS
		}
		var pairs []float64 // round by round
		for i := range min(len(off.rps), len(on.rps)) {
			pairs = append(pairs, on.rps[i]/off.rps[i])
		}
		fmt.Fprintf(b.out, "  ingest forwarding off %7.0f req/s  %4.0fµs/req server CPU\n", offRPS, median(off.cpuReq))
		fmt.Fprintf(b.out, "  ingest forwarding on  %7.0f req/s  %4.0fµs/req server CPU\n", onRPS, median(on.cpuReq))
		fmt.Fprintf(b.out, "  ratio on / off        %7.2f (round by round: median %.2f, each %s)\n", ratio, median(pairs), fmtRatios(pairs))
		if base := ingest[baseOn]; base != nil {
			baseRPS := median(base.rps)
			var basePairs []float64
			for i := range min(len(off.rps), len(base.rps)) {
				basePairs = append(basePairs, base.rps[i]/off.rps[i])
			}
			fmt.Fprintf(b.out, "  ingest %s %7.0f req/s  %4.0fµs/req server CPU\n", baseOn, baseRPS, median(base.cpuReq))
			fmt.Fprintf(b.out, "  ratio base on / off   %7.2f (round by round: median %.2f, each %s)\n", baseRPS/max(1, offRPS), median(basePairs), fmtRatios(basePairs))
		}
	}
	fmt.Fprintln(b.out, "\ntargets:")
	if r, has := drains["sqlite"]; has {
		verdict(median(r) >= b.cfg.minDrain, "SQLite drain at the default concurrency ≥ %.0f/s: %.0f/s", b.cfg.minDrain, median(r))
	}
	if r, has := drains["ordered"]; has {
		verdict(median(r) >= b.cfg.minOrdered, "SQLite drain in ordered mode ≥ %.0f/s: %.0f/s", b.cfg.minOrdered, median(r))
	}
	if ingest != nil {
		verdict(ratio >= b.cfg.minIngest, "ingest with forwarding on ≥ %.0f%% of off: %.1f%%", b.cfg.minIngest*100, ratio*100)
	}
	verdict(len(b.failed) == 0, "every check: %d failed %s", len(b.failed), strings.Join(b.failed, "; "))
	return ok
}

func numCPU() int { return runtime.NumCPU() }

func fmtRatios(v []float64) string {
	out := make([]string, len(v))
	for i, r := range v {
		out[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(out, " ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// forwardStats is the part of GET /v1/stats this reads.
type forwardStats struct {
	Forwards *struct {
		ByState map[string]int `json:"byState"`
		Depth   int            `json:"depth"`
	} `json:"forwards"`
}

// adminJSON sends a request to the admin listener and decodes its 200
// answer into v.
func adminJSON(ctx context.Context, method, admin, path, body string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+admin+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// app is the app forwards go to: it answers 200 at once, or holds the
// request while hang is set, and counts what it gets.
type app struct {
	url  string
	srv  *http.Server
	hits atomic.Int64
	bad  atomic.Int64
	hang atomic.Bool
	wg   sync.WaitGroup
}

func startApp(ctx context.Context) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &app{url: "http://" + ln.Addr().String() + "/webhooks/nouvel"}
	a.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		if err != nil || n == 0 || r.Method != http.MethodPost || r.Header.Get("X-Nouvel-Signature") == "" {
			a.bad.Add(1)
		}
		a.hits.Add(1)
		if a.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-ctx.Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	a.wg.Go(func() { a.srv.Serve(ln) })
	return a, nil
}

// counts returns the forwards the app got, and how many of them were not
// signed POSTs with a body.
func (a *app) counts() (hits, bad int64) { return a.hits.Load(), a.bad.Load() }

func (a *app) close() {
	a.srv.Close()
	a.wg.Wait()
}
