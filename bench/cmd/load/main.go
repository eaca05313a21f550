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
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errTargetsMissed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "load: "+err.Error())
		os.Exit(2)
	}
}

// errTargetsMissed is the run's result when the figures were measured but
// a target, an answer or the durability check failed.
var errTargetsMissed = errors.New("targets missed")

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
}

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
	fs.Float64Var(&maxRSSMB, "max-rss-mb", 50, "target: nouvelhook peak RSS (VmHWM) at most this many `MB` (10^6 bytes)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.maxRSS = int64(maxRSSMB * 1e6)
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
	budget := time.Duration(2*cfg.rounds)*cfg.duration + 2*cfg.warmup + 2*time.Minute
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

// target is one server under test and everything measured of it.
type target struct {
	name     string
	srv      *server
	checkDup bool
	workers  []*workerState
	nextID   atomic.Uint64 // for -ids ordered
	all      phaseResult   // warm-up and rounds together, for the durability check
	rounds   []roundStat
	peakRSS  int64
}

func (t *target) spec(cfg config, d time.Duration) loadSpec {
	return loadSpec{addr: t.srv.public, secret: cfg.secret, duration: d, maxRequests: cfg.maxRequests,
		timeout: cfg.timeout, dupShare: cfg.dupShare, checkDup: t.checkDup,
		ordered: cfg.idOrder == "ordered", next: &t.nextID}
}

// phase runs one phase against t and adds it to t's totals.
func (t *target) phase(ctx context.Context, cfg config, d time.Duration) (*phaseResult, error) {
	r, err := runPhase(ctx, t.spec(cfg, d), t.workers)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	t.all.addCounts(r)
	return r, nil
}

func runBenchmark(ctx context.Context, cfg config, getenv func(string) string, dir string, stdout io.Writer) error {
	dbPath := filepath.Join(dir, "nouvelhook.db")
	// The durability check counts every job in the file: start from none.
	if err := removeDB(dbPath); err != nil {
		return err
	}
	secretEnv := "NOUVEL_WEBHOOK_SECRET=" + cfg.secret

	vo, err := startServer(ctx, "verify-only", cfg.benchserve, []string{"-listen", "127.0.0.1:0"},
		serverEnv(getenv, secretEnv), filepath.Join(dir, "verifyonly.log"))
	if err != nil {
		return err
	}
	defer vo.stop(syscall.SIGKILL)
	nh, err := startServer(ctx, "nouvelhook", cfg.nouvelhook, []string{"serve"},
		serverEnv(getenv, secretEnv, "NOUVELHOOK_LISTEN=127.0.0.1:0", "NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0",
			"NOUVELHOOK_DB="+dbPath, "NOUVELHOOK_LOG_LEVEL=info"),
		filepath.Join(dir, "nouvelhook.log"))
	if err != nil {
		return err
	}
	defer nh.stop(syscall.SIGKILL)
	if nh.admin == "" {
		return errors.New("nouvelhook did not log its admin address")
	}

	targets := []*target{
		{name: "verify-only", srv: vo, workers: newWorkers(cfg.conns, bench.RunID())},
		{name: "nouvelhook", srv: nh, checkDup: true, workers: newWorkers(cfg.conns, bench.RunID())},
	}
	for _, t := range targets {
		t.all.badStatus = map[int]int64{}
	}
	fmt.Fprintf(stdout, "nouvelhook webhook benchmark: %d connections, %d rounds of %v per target (alternating), warm-up %v, duplicates %.0f%%, %s job ids, %d CPUs shared by servers and load generator\n",
		cfg.conns, cfg.rounds, cfg.duration, cfg.warmup, cfg.dupShare*100, cfg.idOrder, numCPU())
	fmt.Fprintf(stdout, "  verify-only pid %d on %s; nouvelhook pid %d on %s (admin %s, db %s)\n",
		vo.cmd.Process.Pid, vo.public, nh.cmd.Process.Pid, nh.public, nh.admin, dbPath)

	if cfg.warmup > 0 {
		for _, t := range targets {
			r, err := t.phase(ctx, cfg, cfg.warmup)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  warm-up     %-12s %8.0f req/s  failed %d\n", t.name, float64(r.ok)/r.elapsed.Seconds(), r.failures())
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		order := targets
		if round%2 == 0 {
			order = []*target{targets[1], targets[0]}
		}
		for _, t := range order {
			srv0, err := t.srv.cpuTime()
			if err != nil {
				return err
			}
			load0, all0 := selfCPU(), machineCPU()
			r, err := t.phase(ctx, cfg, cfg.duration)
			if err != nil {
				return err
			}
			srv1, err := t.srv.cpuTime()
			if err != nil {
				return err
			}
			st := newRoundStat(r, srv1-srv0, selfCPU()-load0, machineCPU()-all0)
			t.rounds = append(t.rounds, st)
			printRound(stdout, round, cfg.rounds, t.name, st)
			if r.firstError != "" {
				fmt.Fprintf(stdout, "    first failure: %s\n", r.firstError)
			}
		}
	}
	for _, t := range targets {
		if t.peakRSS, _, err = t.srv.memory(); err != nil {
			return fmt.Errorf("%s memory: %w", t.name, err)
		}
	}

	live, liveErr := adminStats(ctx, nh.admin)
	sig := syscall.SIGKILL
	if cfg.stopSignal == "term" {
		sig = syscall.SIGTERM
	}
	if err := nh.stop(sig); err != nil {
		return fmt.Errorf("stop nouvelhook: %w", err)
	}
	if err := vo.stop(syscall.SIGTERM); err != nil {
		fmt.Fprintf(stdout, "  verify-only stop: %v\n", err)
	}
	stored, storedErr := readStore(ctx, dbPath, targets[1])

	ok := report(stdout, cfg, targets[0], targets[1])
	ok = reportDurability(stdout, cfg, targets[1], live, liveErr, stored, storedErr) && ok
	if !ok {
		return errTargetsMissed
	}
	return nil
}

// report prints the table of medians and checks the targets.
func report(w io.Writer, cfg config, vo, nh *target) bool {
	mv, mn := medianStat(vo.rounds), medianStat(nh.rounds)
	fmt.Fprintf(w, "\nmedian of %d rounds, %d connections:\n", cfg.rounds, cfg.conns)
	fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s %10s %10s %9s %9s\n",
		"target", "req/s", "p50", "p99", "p99.9", "peak RSS", "srv cpu", "srv cores", "failed")
	for _, r := range []struct {
		t *target
		m roundStat
	}{{vo, mv}, {nh, mn}} {
		fmt.Fprintf(w, "  %-12s %9.0f %9s %9s %9s %10s %8s/req %9.2f %9d\n",
			r.t.name, r.m.rps, ms(r.m.p50), ms(r.m.p99), ms(r.m.p999), mb(r.t.peakRSS), us(r.m.cpuPerReq), r.m.srvCores, r.m.failed)
	}
	ratio := 0.0
	if mv.rps > 0 {
		ratio = mn.rps / mv.rps
	}
	fmt.Fprintf(w, "  ratio (nouvelhook / verify-only req/s): %.2f\n", ratio)
	fmt.Fprintf(w, "  load generator: %.2f cores (median over nouvelhook rounds), %.2f (verify-only rounds)\n", mn.loadCores, mv.loadCores)
	fmt.Fprintf(w, "  other processes: %.2f cores (median over nouvelhook rounds), %.2f (verify-only rounds) of %d\n\n",
		mn.otherCores, mv.otherCores, numCPU())

	v := verdicts{w: w, all: true}
	fmt.Fprintf(w, "targets at %d connections:\n", cfg.conns)
	v.check(ratio >= cfg.minRatio, "nouvelhook req/s ≥ %.0f%% of verify-only: %.1f%%", cfg.minRatio*100, ratio*100)
	v.check(mn.p99 <= cfg.maxP99, "nouvelhook p99 ≤ %v: %s", cfg.maxP99, ms(mn.p99))
	v.check(nh.peakRSS <= cfg.maxRSS, "nouvelhook peak RSS ≤ %s: %s", mb(cfg.maxRSS), mb(nh.peakRSS))
	fv, fn := vo.all.failures(), nh.all.failures()
	v.check(fv == 0 && fn == 0, "every answer (warm-up included) 200 with the expected body: %d failed (verify-only %d, nouvelhook %d)",
		fv+fn, fv, fn)
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
