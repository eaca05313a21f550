// Command load is nouvelhook's webhook load benchmark. It runs two servers
// as processes of their own on loopback ports:
//
//   - nouvelhook: the shipping binary (`nouvelhook serve`) with a temp DB;
//     each 200 means the delivery was committed (WAL, synchronous=FULL);
//   - verify-only: the same Echo handler (handler.NewPublic) with a recorder
//     that stores nothing (bench/cmd/benchserve without -db), the cost floor.
//
// It warms both up, then runs alternating timed rounds (A B, B A, A B, …)
// with the same closed-loop load of correctly signed ~540-byte webhooks, each
// for a new job, over keep-alive connections, and prints the median over the
// rounds of req/s, p50 and p99, the peak RSS of each process and the ratio of
// the two throughputs, checked against the targets. Finally it SIGKILLs
// nouvelhook and checks its database holds every job it answered 200 for.
//
// With -targets sqlite,pg1,pg3 it also runs nouvelhook on Postgres, one
// replica (pg1) and three sharing one log (pg3, the connections spread over
// their public listeners round-robin), each target in a fresh schema dropped
// afterwards, all in the same alternating rounds; it adds the CPU the
// Postgres server spent to each round, and checks every target's log after
// SIGKILL.
//
// With -profile DIR it instead profiles bench/cmd/benchserve (the same webhook
// wiring, with net/http/pprof) under the same load.
//
// bench/run.sh builds everything and runs it; see bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

func main() { loadgen.Main("load", run) }

type config struct {
	nouvelhook, benchserve string

	conns       int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	dupShare    float64
	idOrder     string
	maxRequests int64
	timeout     time.Duration
	secret      string
	workdir     string
	keep        bool
	stopSignal  string
	profile     string

	minRatio float64
	maxP99   time.Duration
	maxRSS   int64

	// targets are the nouvelhook configurations measured beside
	// verify-only: sqlite, pg1 (one replica on Postgres), pg3 (three).
	targets    []string
	pgURL      string
	minPGRatio float64       // pg1 req/s at least this share of sqlite's
	maxPGP99   time.Duration // pg1's p99 at most this
	minPG3     float64       // pg3 req/s at least this share of pg1's
}

// knownTargets are the -targets values, in the order they run.
var knownTargets = []string{"sqlite", "pg1", "pg3"}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: load -nouvelhook BIN -benchserve BIN [flags]\n"+
			"       load -benchserve BIN -profile DIR [flags]\n\n"+
			"Benchmarks nouvelhook's webhook path against a verify-only baseline; bench/run.sh builds the binaries.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.nouvelhook, "nouvelhook", "", "the nouvelhook `binary` (go build ./cmd/nouvelhook)")
	fs.StringVar(&c.benchserve, "benchserve", "", "the baseline and profiling server `binary` (go build ./bench/cmd/benchserve)")
	fs.IntVar(&c.conns, "conns", 64, "concurrent keep-alive `connections`, one closed-loop worker each")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each timed round")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "untimed warm-up per target before the rounds")
	fs.IntVar(&c.rounds, "rounds", 3, "timed rounds per target, alternating targets; the median is reported")
	fs.Float64Var(&c.dupShare, "dup", 0, "`share` (0 to 1) of requests that repeat an already acknowledged job (a duplicate delivery)")
	fs.StringVar(&c.idOrder, "ids", "spread", "job id `order`: spread (64 interleaved sequences, like random UUIDs: worst-ish for the job_id indexes) or ordered (one increasing sequence, like time-ordered cuids)")
	fs.Int64Var(&c.maxRequests, "max-requests", 5_000_000, "cap on requests per phase, beside the duration")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request timeout; a timeout counts as an error")
	fs.StringVar(&c.secret, "secret", "bench-secret-0123456789abcdef", "webhook signing secret given to both servers")
	fs.StringVar(&c.workdir, "workdir", "", "`folder` for the DB and server logs (default: a new temp folder)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work folder (DB, logs) after the run")
	fs.StringVar(&c.stopSignal, "stop", "kill", "how nouvelhook is stopped before its DB is checked: kill (SIGKILL) or term (SIGTERM)")
	fs.StringVar(&c.profile, "profile", "", "profile benchserve into `DIR` instead of benchmarking")
	fs.Float64Var(&c.minRatio, "min-ratio", 0.25, "target: nouvelhook req/s at least this share of verify-only's")
	fs.DurationVar(&c.maxP99, "max-p99", 20*time.Millisecond, "target: nouvelhook p99 at most this")
	var maxRSSMB float64
	fs.Float64Var(&maxRSSMB, "max-rss-mb", 50, "target: nouvelhook peak RSS (VmHWM) at most this many `MB` (10^6 bytes), each replica")
	targets := fs.String("targets", "sqlite", "comma-separated nouvelhook `targets` measured beside verify-only: sqlite, pg1 (one replica on Postgres), pg3 (three replicas on one Postgres, connections spread round-robin)")
	fs.StringVar(&c.pgURL, "pg", "", "Postgres `URL` the pg targets make a schema each in (default: NOUVELHOOK_TEST_POSTGRES, else "+loadgen.DefaultPostgres+")")
	fs.Float64Var(&c.minPGRatio, "min-pg-ratio", 0.5, "target: pg1 req/s at least this share of sqlite's")
	fs.DurationVar(&c.maxPGP99, "max-pg-p99", 50*time.Millisecond, "target: pg1 and pg3 p99 at most this")
	fs.Float64Var(&c.minPG3, "min-pg3-ratio", 1, "target: pg3 req/s at least this share of pg1's")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.maxRSS = int64(maxRSSMB * 1e6)
	for _, name := range strings.Split(*targets, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(knownTargets, name) {
			return c, fmt.Errorf("-targets: unknown target %q (want sqlite, pg1, pg3)", name)
		}
		if !slices.Contains(c.targets, name) {
			c.targets = append(c.targets, name)
		}
	}
	slices.SortFunc(c.targets, func(a, b string) int {
		return slices.Index(knownTargets, a) - slices.Index(knownTargets, b)
	})
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.benchserve == "":
		return c, errors.New("-benchserve is required (bench/run.sh builds it)")
	case c.profile == "" && c.nouvelhook == "":
		return c, errors.New("-nouvelhook is required (bench/run.sh builds it)")
	case c.conns < 1 || c.conns > 4096:
		return c, errors.New("-conns must be 1 to 4096")
	case c.rounds < 1 || c.rounds > 20:
		return c, errors.New("-rounds must be 1 to 20")
	case c.duration < 100*time.Millisecond || c.duration > 5*time.Minute:
		return c, errors.New("-duration must be 100ms to 5m")
	case c.warmup < 0 || c.warmup > time.Minute:
		return c, errors.New("-warmup must be 0 to 1m")
	case c.dupShare < 0 || c.dupShare > 1:
		return c, errors.New("-dup must be 0 to 1")
	case c.maxRequests < 1:
		return c, errors.New("-max-requests must be at least 1")
	case c.idOrder != "spread" && c.idOrder != "ordered":
		return c, errors.New("-ids must be spread or ordered")
	case c.stopSignal != "kill" && c.stopSignal != "term":
		return c, errors.New("-stop must be kill or term")
	case strings.Contains(c.secret, ","):
		return c, errors.New("-secret must be a single secret")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// Bounded in time whatever happens: every phase plus a margin for
	// starting, stopping and checking.
	n := time.Duration(len(cfg.targets) + 1)
	budget := n*time.Duration(cfg.rounds)*cfg.duration + n*cfg.warmup + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	dir := cfg.workdir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nouvelhook-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if !cfg.keep && cfg.workdir == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintf(stdout, "work folder: %s\n", dir)
	}
	if cfg.profile != "" {
		return runProfile(ctx, cfg, getenv, dir, stdout)
	}
	if cfg.pgURL == "" {
		cfg.pgURL = getenv("NOUVELHOOK_TEST_POSTGRES")
	}
	if cfg.pgURL == "" {
		cfg.pgURL = loadgen.DefaultPostgres
	}
	return runBenchmark(ctx, cfg, getenv, dir, stdout)
}

// serverEnv is the servers' whole environment: nothing of the driver's but
// PATH and the Go runtime knobs, which then apply to both servers alike.
func serverEnv(getenv func(string) string, extra ...string) []string {
	env := []string{"PATH=" + getenv("PATH")}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// target is one configuration under test, its server processes (replicas
// sharing one log), and everything measured of it.
type target struct {
	name     string
	srvs     []*loadgen.Server
	checkDup bool
	workers  []*loadgen.Worker
	nextID   atomic.Uint64  // for -ids ordered
	all      loadgen.Result // warm-up and rounds together, for the durability check
	rounds   []roundStat
	peakRSS  []int64           // per replica
	dbPath   string            // the SQLite target's file
	pg       *loadgen.PGSchema // a Postgres target's schema
}

func (t *target) addrs() []string {
	a := make([]string, len(t.srvs))
	for i, s := range t.srvs {
		a[i] = s.Public
	}
	return a
}

// cpuTime is the CPU all of t's replicas have used so far.
func (t *target) cpuTime() (time.Duration, error) {
	var sum time.Duration
	for _, s := range t.srvs {
		d, err := s.CPUTime()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.Name, err)
		}
		sum += d
	}
	return sum, nil
}

func (t *target) spec(cfg config, d time.Duration) loadgen.Spec {
	return loadgen.Spec{Addrs: t.addrs(), Secret: cfg.secret, Duration: d, MaxRequests: cfg.maxRequests,
		Timeout: cfg.timeout, DupShare: cfg.dupShare, CheckDup: t.checkDup,
		Ordered: cfg.idOrder == "ordered", Next: &t.nextID}
}

// phase runs one phase against t and adds it to t's totals.
func (t *target) phase(ctx context.Context, cfg config, d time.Duration) (*loadgen.Result, error) {
	r, err := loadgen.RunPhase(ctx, t.spec(cfg, d), t.workers)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	t.all.AddCounts(r)
	return r, nil
}

// startTarget starts the replicas of the nouvelhook target name: sqlite
// with a file in dir, pg1 and pg3 with a fresh schema in cfg.pgURL's
// database. It returns what it started even with an error, for cleanup.
func startTarget(ctx context.Context, cfg config, getenv func(string) string, dir, name string) (*target, error) {
	t := &target{name: name, checkDup: true, workers: loadgen.NewWorkers(cfg.conns, bench.RunID())}
	replicas := 1
	var db string
	switch name {
	case "sqlite":
		t.dbPath = filepath.Join(dir, "nouvelhook.db")
		// The durability check counts every job in the file: start from none.
		if err := removeDB(t.dbPath); err != nil {
			return t, err
		}
		db = t.dbPath
	case "pg1", "pg3":
		if name == "pg3" {
			replicas = 3
		}
		pg, err := loadgen.NewPGSchema(ctx, loadgen.DirectURL(cfg.pgURL), name)
		if err != nil {
			return t, fmt.Errorf("%s: %w", name, err)
		}
		t.pg, db = pg, pg.DBURL
	}
	for i := range replicas {
		srvName := name
		if replicas > 1 {
			srvName = fmt.Sprintf("%s-%d", name, i+1)
		}
		srv, err := loadgen.StartServer(ctx, srvName, cfg.nouvelhook, []string{"serve"},
			serverEnv(getenv, "NOUVEL_WEBHOOK_SECRET="+cfg.secret, "NOUVELHOOK_LISTEN=127.0.0.1:0",
				"NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0", "NOUVELHOOK_DB="+db, "NOUVELHOOK_LOG_LEVEL=info"),
			filepath.Join(dir, srvName+".log"))
		if err != nil {
			return t, err
		}
		t.srvs = append(t.srvs, srv)
		if srv.Admin == "" {
			return t, fmt.Errorf("%s did not log its admin address", srvName)
		}
	}
	return t, nil
}

func runBenchmark(ctx context.Context, cfg config, getenv func(string) string, dir string, stdout io.Writer) error {
	var targets []*target
	defer func() {
		for _, t := range targets {
			for _, s := range t.srvs {
				s.Stop(syscall.SIGKILL)
			}
		}
		for _, t := range targets {
			if t.pg == nil {
				continue
			}
			if cfg.keep {
				fmt.Fprintf(stdout, "kept schema %s\n", t.pg.Schema)
			} else if err := t.pg.Drop(loadgen.DirectURL(cfg.pgURL)); err != nil {
				fmt.Fprintf(stdout, "drop schema %s: %v\n", t.pg.Schema, err)
			}
		}
	}()
	vo, err := loadgen.StartServer(ctx, "verify-only", cfg.benchserve, []string{"-listen", "127.0.0.1:0"},
		serverEnv(getenv, "NOUVEL_WEBHOOK_SECRET="+cfg.secret), filepath.Join(dir, "verifyonly.log"))
	if err != nil {
		return err
	}
	targets = append(targets, &target{name: "verify-only", srvs: []*loadgen.Server{vo}, workers: loadgen.NewWorkers(cfg.conns, bench.RunID())})
	for _, name := range cfg.targets {
		t, err := startTarget(ctx, cfg, getenv, dir, name)
		targets = append(targets, t)
		if err != nil {
			return err
		}
	}
	for _, t := range targets {
		t.all.BadStatus = map[int]int64{}
	}
	pgs := &pgSampler{base: loadgen.DirectURL(cfg.pgURL), on: slices.ContainsFunc(targets, func(t *target) bool { return t.pg != nil })}

	fmt.Fprintf(stdout, "nouvelhook webhook benchmark: %d connections, %d rounds of %v per target (alternating), warm-up %v, duplicates %.0f%%, %s job ids, %d CPUs shared by servers, load generator and Postgres\n",
		cfg.conns, cfg.rounds, cfg.duration, cfg.warmup, cfg.dupShare*100, cfg.idOrder, numCPU())
	for _, t := range targets {
		for _, s := range t.srvs {
			fmt.Fprintf(stdout, "  %-12s pid %d on %s", s.Name, s.Cmd.Process.Pid, s.Public)
			if s.Admin != "" {
				fmt.Fprintf(stdout, " (admin %s)", s.Admin)
			}
			fmt.Fprintln(stdout)
		}
		switch {
		case t.dbPath != "":
			fmt.Fprintf(stdout, "  %-12s db %s\n", "", t.dbPath)
		case t.pg != nil:
			fmt.Fprintf(stdout, "  %-12s schema %s, %d connections spread over %d replicas\n", "", t.pg.Schema, cfg.conns, len(t.srvs))
		}
	}

	if cfg.warmup > 0 {
		for _, t := range targets {
			r, err := t.phase(ctx, cfg, cfg.warmup)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  warm-up     %-12s %8.0f req/s  failed %d\n", t.name, float64(r.OK)/r.Elapsed.Seconds(), r.Failures())
			if r.FirstError != "" {
				fmt.Fprintf(stdout, "    first failure: %s\n", r.FirstError)
			}
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		order := slices.Clone(targets)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			srv0, err := t.cpuTime()
			if err != nil {
				return err
			}
			pg0, err := pgs.sample(ctx)
			if err != nil {
				return err
			}
			var waits *waitSampler
			if t.pg != nil {
				waits = pgs.sampleWaits(ctx, t.pg.AppName, 100*time.Millisecond)
			}
			load0, all0 := loadgen.SelfCPU(), loadgen.MachineCPU()
			r, err := t.phase(ctx, cfg, cfg.duration)
			waitShares := ""
			if waits != nil {
				waitShares = waits.finish()
			}
			if err != nil {
				return err
			}
			srv1, err := t.cpuTime()
			if err != nil {
				return err
			}
			load1, all1 := loadgen.SelfCPU(), loadgen.MachineCPU()
			pg1, err := pgs.sample(ctx)
			if err != nil {
				return err
			}
			st := newRoundStat(r, srv1-srv0, load1-load0, all1-all0, pg1.since(pg0))
			t.rounds = append(t.rounds, st)
			printRound(stdout, round, cfg.rounds, t.name, st, pgs.on)
			if waits != nil {
				fmt.Fprintf(stdout, "    %s backends (pg_stat_activity every 100 ms): %s\n", t.name, waitShares)
			}
			if r.FirstError != "" {
				fmt.Fprintf(stdout, "    first failure: %s\n", r.FirstError)
			}
		}
	}
	for _, t := range targets {
		for _, s := range t.srvs {
			peak, _, err := s.Memory()
			if err != nil {
				return fmt.Errorf("%s memory: %w", s.Name, err)
			}
			t.peakRSS = append(t.peakRSS, peak)
		}
	}

	type durability struct {
		live      storeCounts
		liveErr   error
		stored    storeCounts
		storedErr error
	}
	checked := map[*target]*durability{}
	sig := syscall.SIGKILL
	if cfg.stopSignal == "term" {
		sig = syscall.SIGTERM
	}
	for _, t := range targets[1:] {
		d := &durability{}
		checked[t] = d
		d.live, d.liveErr = adminStats(ctx, t.srvs[0].Admin)
		for _, s := range t.srvs {
			if err := s.Stop(sig); err != nil {
				return fmt.Errorf("stop %s: %w", s.Name, err)
			}
		}
		if t.pg != nil {
			d.stored, d.storedErr = readPostgres(ctx, loadgen.DirectURL(cfg.pgURL), t)
		} else {
			d.stored, d.storedErr = readStore(ctx, t.dbPath, t)
		}
	}
	if err := vo.Stop(syscall.SIGTERM); err != nil {
		fmt.Fprintf(stdout, "  verify-only stop: %v\n", err)
	}

	ok := report(stdout, cfg, targets, pgs.on)
	for _, t := range targets[1:] {
		d := checked[t]
		ok = reportDurability(stdout, cfg, t, d.live, d.liveErr, d.stored, d.storedErr) && ok
	}
	if !ok {
		return loadgen.ErrTargetsMissed
	}
	return nil
}

// report prints the table of medians and checks the targets.
func report(w io.Writer, cfg config, targets []*target, showPG bool) bool {
	med := map[string]roundStat{}
	byName := map[string]*target{}
	for _, t := range targets {
		med[t.name], byName[t.name] = medianStat(t.rounds), t
	}
	fmt.Fprintf(w, "\nmedian of %d rounds, %d connections (RSS: peak per replica; cores: CPU time / wall time; other: the rest of the machine meanwhile):\n", cfg.rounds, cfg.conns)
	fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s %10s %9s", "target", "req/s", "p50", "p99", "p99.9", "srv cpu", "srv cores")
	if showPG {
		fmt.Fprintf(w, " %10s %8s", "pg cpu", "pg cores")
	}
	fmt.Fprintf(w, " %8s %6s %6s  %s\n", "load gen", "other", "failed", "peak RSS")
	for _, t := range targets {
		m := med[t.name]
		rss := make([]string, len(t.peakRSS))
		for i, b := range t.peakRSS {
			rss[i] = fmt.Sprintf("%.1f", float64(b)/1e6)
		}
		fmt.Fprintf(w, "  %-12s %9.0f %9s %9s %9s %6s/req %9.2f", t.name, m.rps, ms(m.p50), ms(m.p99), ms(m.p999),
			us(m.cpuPerReq), m.srvCores)
		if showPG {
			fmt.Fprintf(w, " %6s/req %8.2f", us(m.pgPerReq), m.pgCores)
		}
		fmt.Fprintf(w, " %8.2f %6.2f %6d  %s MB\n", m.loadCores, m.otherCores, m.failed, strings.Join(rss, " / "))
	}
	ratio := func(a, b string) (float64, bool) {
		ma, okA := med[a]
		mb, okB := med[b]
		if !okA || !okB || mb.rps == 0 {
			return 0, false
		}
		return ma.rps / mb.rps, true
	}
	fmt.Fprintln(w, "  req/s ratios:")
	for _, t := range targets[1:] {
		r, _ := ratio(t.name, "verify-only")
		fmt.Fprintf(w, "    %-6s / verify-only  %.2f\n", t.name, r)
	}
	rPG1, havePG1 := ratio("pg1", "sqlite")
	rPG3, havePG3 := ratio("pg3", "pg1")
	if havePG1 {
		fmt.Fprintf(w, "    pg1    / sqlite       %.2f\n", rPG1)
	}
	if havePG3 {
		fmt.Fprintf(w, "    pg3    / pg1          %.2f\n", rPG3)
	}
	if r, ok := ratio("pg3", "sqlite"); ok {
		fmt.Fprintf(w, "    pg3    / sqlite       %.2f\n", r)
	}

	v := verdicts{w: w, all: true}
	fmt.Fprintf(w, "\ntargets at %d connections:\n", cfg.conns)
	if t, ok := byName["sqlite"]; ok {
		r, _ := ratio("sqlite", "verify-only")
		v.check(r >= cfg.minRatio, "sqlite req/s ≥ %.0f%% of verify-only: %.1f%%", cfg.minRatio*100, r*100)
		v.check(med[t.name].p99 <= cfg.maxP99, "sqlite p99 ≤ %v: %s", cfg.maxP99, ms(med[t.name].p99))
	}
	if _, ok := byName["pg1"]; ok {
		if havePG1 {
			v.check(rPG1 >= cfg.minPGRatio, "pg1 req/s ≥ %.0f%% of sqlite: %.1f%%", cfg.minPGRatio*100, rPG1*100)
		}
		v.check(med["pg1"].p99 <= cfg.maxPGP99, "pg1 p99 ≤ %v: %s", cfg.maxPGP99, ms(med["pg1"].p99))
	}
	if havePG3 {
		v.check(rPG3 >= cfg.minPG3, "pg3 req/s ≥ %.0f%% of pg1: %.1f%%", cfg.minPG3*100, rPG3*100)
	}
	for _, t := range targets[1:] {
		peak := slices.Max(t.peakRSS)
		v.check(peak <= cfg.maxRSS, "%s peak RSS ≤ %s each replica: %s", t.name, mb(cfg.maxRSS), mb(peak))
	}
	var total int64
	var each []string
	for _, t := range targets {
		f := t.all.Failures()
		total += f
		each = append(each, fmt.Sprintf("%s %d", t.name, f))
	}
	v.check(total == 0, "every answer (warm-up included) 200 with the expected body: %d failed (%s)", total, strings.Join(each, ", "))
	return v.all
}

// removeDB removes a SQLite file left by an earlier run, with its WAL and
// shared-memory files.
func removeDB(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
