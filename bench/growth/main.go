// Command growth measures what must not grow with the job log. It builds
// and starts the real binary (`nouvelhook serve`) on a temp SQLite file,
// fills the log to -jobs jobs through the webhook path (signed deliveries
// over loopback, -conns at a time), then prints the median of -tries for:
//
//   - one reconciler sweep (store.ExpireJobs + store.MarkMissedWebhooks) and
//     one store.Prune of 500 jobs, timed in process on the same file once the
//     server has stopped;
//   - GET /v1/jobs?status=completed&limit=500, ?status=failed, ?since=<future>,
//     /v1/stats and /metrics on the admin listener, with the reconciler on;
//   - the first /readyz after a start with the reconciler on;
//   - ingest (new jobs, closed loop) p50/p99/p99.9 with the reconciler off and
//     on, in alternating rounds of one run (off, on, on, off, ...).
//
// The reconciler polls a stand-in Nouvel (reconcile/nouveltest) for -track
// jobs that stay running, plus a few that end at their first poll with no
// webhook, so sweeps have work to look at.
//
//	go run ./bench/growth -jobs 1000000
//
// Exit status: 0 every target met, 1 a target missed, 2 the run failed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

const (
	secret  = "growth-bench-secret"
	apiKey  = "growth-bench-key"
	webhook = "/webhooks/nouvel"
)

type config struct {
	jobs, conns, tries, rounds, track, replays int
	round, timeout                             time.Duration
	workdir, db, bin                           string
	keep                                       bool
}

func main() {
	var c config
	flag.IntVar(&c.jobs, "jobs", 100000, "jobs to fill the log to before measuring")
	flag.IntVar(&c.conns, "conns", 32, "concurrent connections for filling and ingest rounds")
	flag.IntVar(&c.tries, "tries", 9, "tries per latency figure; the median is printed")
	flag.IntVar(&c.rounds, "rounds", 3, "ingest rounds per mode (reconciler off, on)")
	flag.IntVar(&c.track, "track", 200, "jobs tracked for the reconciler that stay running")
	flag.IntVar(&c.replays, "replays", 20000, "times one signed delivery is replayed")
	flag.DurationVar(&c.round, "round", 8*time.Second, "length of one ingest round")
	flag.DurationVar(&c.timeout, "timeout", 20*time.Minute, "the whole run stops after this")
	flag.StringVar(&c.workdir, "workdir", "", "folder for the database, binary and logs (default: a temp folder)")
	flag.StringVar(&c.db, "db", "", "an existing log to use (and fill further) instead of a new one")
	flag.StringVar(&c.bin, "bin", "", "a built nouvelhook binary (default: go build ./cmd/nouvelhook)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work folder")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ok, err := run(ctx, c)
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "growth:", err)
		os.Exit(2)
	case !ok:
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) (bool, error) {
	dir := c.workdir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "nouvelhook-growth-"); err != nil {
			return false, err
		}
	}
	if !c.keep && c.workdir == "" {
		defer os.RemoveAll(dir)
	}
	if c.bin == "" {
		c.bin = filepath.Join(dir, "nouvelhook")
		build := exec.CommandContext(ctx, "go", "build", "-o", c.bin, "github.com/nouvelhook/nouvelhook/cmd/nouvelhook")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return false, fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	if c.db == "" {
		c.db = filepath.Join(dir, "growth.db")
	}
	fake := nouveltest.New(nouveltest.Options{APIKey: apiKey, WebhookSecret: secret, RateLimit: 600})
	defer fake.Close()
	env := func(reconcile bool) []string {
		e := []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
			"NOUVEL_WEBHOOK_SECRET=" + secret, "NOUVELHOOK_DB=" + c.db,
			"NOUVELHOOK_LISTEN=127.0.0.1:0", "NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0",
			"NOUVELHOOK_LOG_LEVEL=info", "NOUVELHOOK_MAX_CONNS=4096",
		}
		if reconcile {
			e = append(e, "NOUVEL_API_KEY="+apiKey, "NOUVEL_API_BASE_URL="+fake.URL(),
				"NOUVELHOOK_POLL_BUDGET=60", "NOUVELHOOK_MISSED_GRACE=2s")
		}
		return e
	}

	srv, err := start(ctx, c.bin, env(false), filepath.Join(dir, "serve-fill.log"))
	if err != nil {
		return false, err
	}
	defer func() { srv.stop() }()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.conns * 2, MaxConnsPerHost: c.conns * 2}, Timeout: 30 * time.Second}
	var st store.Stats
	if err := getJSON(ctx, client, srv.adminURL("/v1/stats"), &st); err != nil {
		return false, err
	}
	run := bench.RunID()
	fillStart := time.Now()
	if n := c.jobs - st.Jobs; n > 0 {
		fmt.Printf("filling %d jobs (log has %d) with %d connections\n", n, st.Jobs, c.conns)
		if _, err := load(ctx, client, srv, c.conns, run+"f", int64(n), 0, true); err != nil {
			return false, err
		}
		fmt.Printf("filled in %s (%.0f jobs/s)\n", time.Since(fillStart).Round(time.Second), float64(n)/time.Since(fillStart).Seconds())
	}
	if err := trackJobs(ctx, client, srv, fake, run, c.track); err != nil {
		return false, err
	}
	replayed := run + "-replayed"
	replayStart := time.Now()
	if err := replay(ctx, client, srv, replayed, c.replays, c.conns); err != nil {
		return false, err
	}
	fmt.Printf("replayed one signed delivery %d times in %s\n", c.replays, time.Since(replayStart).Round(time.Millisecond))

	ingest := map[bool][]phase{}
	doRound := func(on bool, i int) error {
		if _, err := load(ctx, client, srv, c.conns, fmt.Sprintf("%sw%d%v", run, i, on), 0, time.Second, false); err != nil { // warm-up
			return err
		}
		p, err := load(ctx, client, srv, c.conns, fmt.Sprintf("%si%d%v", run, i, on), 0, c.round, false)
		if err != nil {
			return err
		}
		ingest[on] = append(ingest[on], p)
		fmt.Printf("  ingest round, reconciler %-3s %7.0f req/s  p50 %7s  p99 %7s  p99.9 %7s  (%d req)\n",
			onOff(on), p.rate(), p.pct(0.5), p.pct(0.99), p.pct(0.999), len(p.lat))
		return nil
	}
	restart := func(on bool) (time.Duration, error) {
		if err := srv.stop(); err != nil {
			return 0, fmt.Errorf("stop: %w", err)
		}
		next, err := start(ctx, c.bin, env(on), filepath.Join(dir, fmt.Sprintf("serve-%s.log", onOff(on))))
		if err != nil {
			return 0, err
		}
		srv = next
		t := time.Now()
		resp, err := client.Get(srv.adminURL("/readyz"))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t), nil
	}

	// The reads are timed first, on the log as filled, with the reconciler
	// on. Then ingest rounds alternate on, off, off, on, ... so drift in the
	// machine's load falls on both; the server restarts only when the mode
	// changes.
	firstReady, err := restart(true)
	if err != nil {
		return false, err
	}
	if err := getJSON(ctx, client, srv.adminURL("/v1/stats"), &st); err != nil {
		return false, err
	}
	jobsAtReads := st.Jobs
	reads, err := measureReads(ctx, client, srv, c.tries, replayed)
	if err != nil {
		return false, err
	}
	idle, err := srv.idleCores(ctx, 5*time.Second)
	if err != nil {
		return false, err
	}
	modes := make([]bool, 0, 2*c.rounds)
	for i := range c.rounds {
		modes = append(modes, i%2 == 0, i%2 == 1)
	}
	for i, on := range modes {
		if i > 0 && on != modes[i-1] {
			if _, err := restart(on); err != nil {
				return false, err
			}
		}
		if err := doRound(on, i); err != nil {
			return false, err
		}
	}
	if err := getJSON(ctx, client, srv.adminURL("/v1/stats"), &st); err != nil {
		return false, err
	}
	if err := srv.stop(); err != nil {
		return false, fmt.Errorf("stop: %w", err)
	}
	sweep, prune, err := measureStore(ctx, c.db, c.tries)
	if err != nil {
		return false, err
	}
	rows, copies, bodyBytes, err := deliveryRows(ctx, c.db, replayed)
	if err != nil {
		return false, err
	}

	size := fileSize(c.db) + fileSize(c.db+"-wal")
	fmt.Printf("\nlog: %d jobs when the reads were timed, %d after the ingest rounds; %.0f MB (database and WAL); %d tracked jobs not terminal\n",
		jobsAtReads, st.Jobs, float64(size)/1e6, st.ByStatus["running"]+st.ByStatus["pending"])
	fmt.Printf("server CPU while idle with the reconciler on: %.3f cores\n", idle)
	fmt.Printf("replays: %d deliveries of one body stored as %d row(s), %d body bytes, copies %d (%.3f body bytes a replay)\n",
		c.replays, rows, bodyBytes, copies, float64(bodyBytes)/float64(max(c.replays, 1)))
	ok := true
	verdict := func(met bool) string {
		if !met {
			ok = false
			return "MISSED"
		}
		return "met"
	}
	fmt.Printf("\n%-58s %10s  %-10s %s\n", "what (median of tries)", "latency", "target", "")
	figures := append([]figure{sweep, prune}, reads...)
	figures = append(figures, figure{name: "first /readyz after a start, reconciler on", d: firstReady})
	for _, f := range figures {
		target, met := "", ""
		if f.target > 0 {
			target, met = "<= "+f.target.String(), verdict(f.d <= f.target)
		}
		fmt.Printf("%-58s %10s  %-10s %s\n", f.name, fmtDur(f.d), target, met)
	}
	off, on := medianPhase(ingest[false]), medianPhase(ingest[true])
	fmt.Printf("\n%-30s %9s %9s %9s %9s\n", "ingest (median of rounds)", "req/s", "p50", "p99", "p99.9")
	fmt.Printf("%-30s %9.0f %9s %9s %9s\n", "reconciler off", off.rate, fmtDur(off.p50), fmtDur(off.p99), fmtDur(off.p999))
	fmt.Printf("%-30s %9.0f %9s %9s %9s\n", "reconciler on", on.rate, fmtDur(on.p50), fmtDur(on.p99), fmtDur(on.p999))
	ratio := float64(on.p999) / float64(max(off.p999, 1))
	fmt.Printf("p99.9 on/off: %.2f (target <= 2.00) %s\n", ratio, verdict(ratio <= 2))
	return ok, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// figure is one latency figure with its target (0: none).
type figure struct {
	name   string
	d      time.Duration
	target time.Duration
}

// measureReads times the admin reads whose cost must not grow with the log.
func measureReads(ctx context.Context, client *http.Client, srv *server, tries int, replayed string) ([]figure, error) {
	var out []figure
	future := url(time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339))
	hourAgo := url(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	for _, r := range []struct {
		name, path string
		target     time.Duration
	}{
		{"GET /v1/jobs?status=completed&limit=500", "/v1/jobs?status=completed&limit=500", 20 * time.Millisecond},
		{"GET /v1/jobs?status=failed&limit=500", "/v1/jobs?status=failed&limit=500", 20 * time.Millisecond},
		{"GET /v1/jobs?status=running,failed&limit=500", "/v1/jobs?status=running,failed&limit=500", 20 * time.Millisecond},
		{"GET /v1/jobs?since=<future>", "/v1/jobs?since=" + future, 20 * time.Millisecond},
		{"GET /v1/jobs?since=<an hour ago>&status=failed&limit=500", "/v1/jobs?status=failed&limit=500&since=" + hourAgo, 20 * time.Millisecond},
		{"GET /v1/jobs/{id} after the replays", "/v1/jobs/" + replayed, 20 * time.Millisecond},
		{"GET /v1/stats", "/v1/stats", 5 * time.Millisecond},
		{"GET /metrics", "/metrics", 5 * time.Millisecond},
	} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ds []time.Duration
		for range tries + 1 { // the first warms the connection and is dropped
			t := time.Now()
			resp, err := client.Get(srv.adminURL(r.path))
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("GET %s: status %d, %v", r.path, resp.StatusCode, err)
			}
			ds = append(ds, time.Since(t))
		}
		out = append(out, figure{name: r.name, d: median(ds[1:]), target: r.target})
	}
	return out, nil
}

func url(s string) string { return strings.ReplaceAll(s, "+", "%2B") }

// measureStore times, in this process on the same file, the reconciler's
// sweep as the reconciler runs it (expire jobs past a 24 h TTL, then flag
// missed webhooks with a 2 min grace), and then one Prune of 500 jobs that
// ended before now, as NOUVELHOOK_RETAIN would; the prunes delete
// tries x 500 of the oldest jobs.
func measureStore(ctx context.Context, path string, tries int) (sweep, prune figure, err error) {
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		return figure{}, figure{}, err
	}
	defer s.Close()
	var ds, ps []time.Duration
	for range tries {
		now := time.Now()
		t := time.Now()
		if _, err := s.ExpireJobs(ctx, now.Add(-24*time.Hour)); err != nil {
			return figure{}, figure{}, err
		}
		if _, err := s.MarkMissedWebhooks(ctx, now, 2*time.Minute); err != nil {
			return figure{}, figure{}, err
		}
		ds = append(ds, time.Since(t))
	}
	for range tries {
		t := time.Now()
		if _, err := s.Prune(ctx, time.Now(), 500); err != nil {
			return figure{}, figure{}, err
		}
		ps = append(ps, time.Since(t))
	}
	return figure{name: "reconciler sweep (ExpireJobs + MarkMissedWebhooks)", d: median(ds), target: time.Millisecond},
		figure{name: "Prune, a batch of 500 ended jobs", d: median(ps)}, nil
}

// replay sends one signed delivery for jobID n times on conns connections;
// every answer but the first must say duplicate.
func replay(ctx context.Context, client *http.Client, srv *server, jobID string, n, conns int) error {
	body := appendBody(nil, jobID, 50)
	sig := bench.NewSigner(secret).AppendSignature(nil, body)
	send := func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.public+webhook, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Nouvel-Signature", string(sig))
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var a struct {
			Duplicate bool `json:"duplicate"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("replay: status %d, %v", resp.StatusCode, err)
		}
		return a.Duplicate, nil
	}
	if _, err := send(); err != nil {
		return err
	}
	var left atomic.Int64
	left.Store(int64(n - 1))
	errc := make(chan error, conns)
	for range conns {
		go func() {
			for left.Add(-1) >= 0 {
				dup, err := send()
				if err == nil && !dup {
					err = errors.New("replay: a repeat was not answered as a duplicate")
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	var first error
	for range conns {
		if err := <-errc; err != nil && first == nil {
			first = err
			left.Store(0)
		}
	}
	return first
}

// deliveryRows reads, from the file, what the log holds for jobID's
// deliveries: rows, copies counted, and body bytes.
func deliveryRows(ctx context.Context, path, jobID string) (rows, copies, bodyBytes int64, err error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	err = db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(copies), 0), COALESCE(SUM(LENGTH(body)), 0)
		FROM deliveries WHERE job_id = ?`, jobID).Scan(&rows, &copies, &bodyBytes)
	return rows, copies, bodyBytes, err
}

// trackJobs adds n jobs to the stand-in that stay running, and a few that
// end at their first poll with no webhook, and tracks them all.
func trackJobs(ctx context.Context, client *http.Client, srv *server, fake *nouveltest.Server, run string, n int) error {
	for i := range n + 10 {
		spec := nouveltest.JobSpec{ID: fmt.Sprintf("%s-track-%05d", run, i), Polls: 1 << 30}
		if i >= n {
			spec.Polls = 1 // ends at the first poll; no webhook comes
		}
		fake.AddJob(spec)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.adminURL("/v1/jobs"),
			strings.NewReader(`{"jobId":"`+spec.ID+`"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("track %s: status %d", spec.ID, resp.StatusCode)
		}
	}
	return nil
}

// phase is the result of one load run.
type phase struct {
	lat     []time.Duration // sorted
	elapsed time.Duration
}

func (p phase) rate() float64 { return float64(len(p.lat)) / p.elapsed.Seconds() }

func (p phase) pct(q float64) string { return fmtDur(pct(p.lat, q)) }

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// load sends signed webhooks for new jobs on conns connections, count of
// them in all (count > 0) or for dur, and returns every latency. A status
// other than 200 fails the run.
func load(ctx context.Context, client *http.Client, srv *server, conns int, run string, count int64, dur time.Duration, progress bool) (phase, error) {
	var sent, done atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	end := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	step := count / 10
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			signer := bench.NewSigner(secret)
			lat := make([]time.Duration, 0, 4096)
			var body, sig []byte
			for lctx.Err() == nil {
				var n int64
				if count > 0 {
					if n = sent.Add(1); n > count {
						break
					}
				} else if time.Now().After(end) {
					break
				} else {
					n = sent.Add(1)
				}
				body = appendBody(body[:0], bench.JobID(run, w, uint64(n)), n)
				sig = signer.AppendSignature(sig[:0], body)
				req, err := http.NewRequestWithContext(lctx, http.MethodPost, "http://"+srv.public+webhook, bytes.NewReader(body))
				if err == nil {
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("X-Nouvel-Signature", string(sig))
					t := time.Now()
					var resp *http.Response
					if resp, err = client.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("webhook answered %d", resp.StatusCode)
						}
					}
					lat = append(lat, time.Since(t))
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					break
				}
				if d := done.Add(1); progress && step > 0 && d%step == 0 {
					fmt.Printf("  %3d%%  %d jobs  %s\n", d*100/count, d, time.Since(start).Round(time.Second))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	slices.Sort(all)
	return phase{lat: all, elapsed: time.Since(start)}, firstErr
}

// appendBody is bench.AppendBody with a mix of end states: 90% completed,
// 7% failed, 3% partial, so status filters have rare and common statuses.
func appendBody(dst []byte, jobID string, n int64) []byte {
	dst = bench.AppendBody(dst, jobID)
	status := ""
	switch {
	case n%100 < 7:
		status = `"status":"failed","totalProjects":2,"completedProjects":0,"failedProjects":2`
	case n%100 < 10:
		status = `"status":"partial","totalProjects":2,"completedProjects":1,"failedProjects":1`
	default:
		return dst
	}
	return bytes.Replace(dst, []byte(`"status":"completed","totalProjects":2,"completedProjects":2,"failedProjects":0`), []byte(status), 1)
}

type summary struct {
	rate           float64
	p50, p99, p999 time.Duration
}

// medianPhase is the median over rounds of each figure.
func medianPhase(ps []phase) summary {
	var rates []float64
	var p50, p99, p999 []time.Duration
	for _, p := range ps {
		rates = append(rates, p.rate())
		p50, p99, p999 = append(p50, pct(p.lat, 0.5)), append(p99, pct(p.lat, 0.99)), append(p999, pct(p.lat, 0.999))
	}
	slices.Sort(rates)
	s := summary{p50: median(p50), p99: median(p99), p999: median(p999)}
	if len(rates) > 0 {
		s.rate = rates[len(rates)/2]
	}
	return s
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fµs", float64(d)/1e3)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// server is `nouvelhook serve` as a child process.
type server struct {
	cmd           *exec.Cmd
	log           string
	public, admin string
	done          chan struct{}
	err           error
}

func (s *server) adminURL(path string) string { return "http://" + s.admin + path }

// start runs bin serve with env, its output in logPath, and waits for the
// line that names its listeners.
func start(ctx context.Context, bin string, env []string, logPath string) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never left behind
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(2 * time.Minute) // the integrity check at start reads the whole file
	for s.public == "" {
		select {
		case <-s.done:
			return nil, fmt.Errorf("serve exited: %v; log: %s", s.err, tail(logPath))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("serve did not log its listeners; log: %s", tail(logPath))
		}
		s.readAddrs()
	}
	return s, nil
}

func (s *server) readAddrs() {
	f, err := os.Open(s.log)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Public string `json:"public_addr"`
			Admin  string `json:"admin_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Public != "" {
			s.public, s.admin = line.Public, line.Admin
		}
	}
}

// idleCores is the CPU the server uses over d with no requests, in cores.
func (s *server) idleCores(ctx context.Context, d time.Duration) (float64, error) {
	before, err := s.cpu()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	after, err := s.cpu()
	return float64(after-before) / float64(d), err
}

// cpu is the user and system time the server has used (/proc/PID/stat,
// fields 14 and 15, in clock ticks of 10 ms).
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:])) // f[0] is field 3
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// stop sends SIGTERM and waits for the exit; SIGKILL after 30 s.
func (s *server) stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return errors.New("serve did not stop within 30 s of SIGTERM; killed")
	}
	var exit *exec.ExitError
	if errors.As(s.err, &exit) {
		return fmt.Errorf("serve exited %d; log: %s", exit.ExitCode(), tail(s.log))
	}
	return s.err
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return strings.TrimSpace(string(b))
}
