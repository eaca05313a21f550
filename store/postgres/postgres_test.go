package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
)

// freshSchema creates an empty schema, dropped when the test ends, and
// returns a URL whose connections use it.
func freshSchema(t testing.TB) string { return pgtest.Schema(t, "nh_") }

func openTest(t testing.TB, dbURL string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dbURL, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func completed(jobID string) store.WebhookDelivery {
	body := fmt.Sprintf(`{"event":"job.completed","jobId":%q,"status":"completed","totalProjects":1}`, jobID)
	return store.WebhookDelivery{
		Body: []byte(body), ReceivedAt: time.Now(), Attempt: 1, JobID: jobID,
		Report: &store.Report{JobID: jobID, Status: store.StatusCompleted, TotalProjects: 1, CompletedProjects: 1},
	}
}

// TestRecordWebhook covers the first-report-wins rule, replays stored once
// and the counters behind Stats, on real Postgres.
func TestRecordWebhook(t *testing.T) {
	s := openTest(t, freshSchema(t), Options{})
	ctx := context.Background()
	d := completed("job-1")
	for i, want := range []store.Outcome{store.OutcomeAccepted, store.OutcomeDuplicate, store.OutcomeDuplicate} {
		got, err := s.RecordWebhook(ctx, d)
		if err != nil || got != want {
			t.Fatalf("delivery %d: got %q, %v; want %q", i+1, got, err, want)
		}
	}
	other := d
	other.Body = []byte(`{"jobId":"job-1","status":"failed"}`)
	other.Report = &store.Report{JobID: "job-1", Status: store.StatusFailed}
	if got, err := s.RecordWebhook(ctx, other); err != nil || got != store.OutcomeConflict {
		t.Fatalf("conflicting delivery: got %q, %v; want conflict", got, err)
	}
	j, err := s.JobWithDeliveries(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != store.StatusCompleted || j.Seq != 1 || j.WebhookDeliveries != 4 || j.DeliveriesTotal != 4 {
		t.Errorf("job: got status %s seq %d webhooks %d total %d; want completed 1 4 4",
			j.Status, j.Seq, j.WebhookDeliveries, j.DeliveriesTotal)
	}
	if len(j.Deliveries) != 2 || j.Deliveries[0].Copies != 3 || j.Deliveries[1].Copies != 1 || !j.Deliveries[1].Duplicate {
		t.Errorf("deliveries: got %+v; want 2 rows, copies 3 then 1 (duplicate)", j.Deliveries)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs != 1 || st.Deliveries != 4 || st.Duplicates != 3 || st.Conflicts != 1 || st.LastSeq != 1 ||
		st.ByStatus["completed"] != 1 || st.BySource["webhook"] != 1 {
		t.Errorf("stats: got %+v", st)
	}
	if _, err := s.Job(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown job: got %v, want ErrNotFound", err)
	}
}

// TestPollsAndSweeps covers Track, RecordPoll, DuePolls, ExpireJobs,
// MarkMissedWebhooks and Prune.
func TestPollsAndSweeps(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := openTest(t, freshSchema(t), Options{Now: clock})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, created, err := s.Track(ctx, id, now); err != nil || !created {
			t.Fatalf("Track %s: %v, created %v", id, err, created)
		}
	}
	if _, created, err := s.Track(ctx, "a", now); err != nil || created {
		t.Fatalf("Track a again: %v, created %v; want not created", err, created)
	}
	due, err := s.DuePolls(ctx, now, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("DuePolls: got %d, %v; want 3", len(due), err)
	}
	next := now.Add(time.Minute)
	if _, err := s.RecordPoll(ctx, "a", store.PollResult{Report: &store.Report{JobID: "a", Status: store.StatusRunning,
		Progress: 40}, Next: next}); err != nil {
		t.Fatal(err)
	}
	out, err := s.RecordPoll(ctx, "b", store.PollResult{Report: &store.Report{JobID: "b", Status: store.StatusCompleted}})
	if err != nil || out != store.OutcomeAccepted {
		t.Fatalf("poll ending b: got %q, %v", out, err)
	}
	if at, ok, err := s.NextPollAt(ctx); err != nil || !ok || !at.Equal(now) {
		t.Errorf("NextPollAt: got %v %v %v; want %v (c)", at, ok, err, now)
	}
	a, _ := s.Job(ctx, "a")
	if a.Status != store.StatusRunning || a.Progress != 40 || a.PollCount != 1 {
		t.Errorf("a: got %s %d%% %d polls", a.Status, a.Progress, a.PollCount)
	}
	now = now.Add(time.Hour)
	expired, err := s.ExpireJobs(ctx, now.Add(-30*time.Minute))
	if err != nil || len(expired) != 2 {
		t.Fatalf("ExpireJobs: got %v, %v; want a and c", expired, err)
	}
	n, err := s.MarkMissedWebhooks(ctx, now, time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("MarkMissedWebhooks: got %d, %v; want 1 (b)", n, err)
	}
	if n, _ := s.MarkMissedWebhooks(ctx, now, time.Minute); n != 0 {
		t.Errorf("second sweep flagged %d; want 0", n)
	}
	events, last, err := s.Events(ctx, 0, 10)
	if err != nil || len(events) != 3 || last != 3 {
		t.Fatalf("Events: got %d, last %d, %v; want 3", len(events), last, err)
	}
	pruned, err := s.Prune(ctx, now.Add(time.Second), 2)
	if err != nil || pruned != 2 {
		t.Fatalf("Prune: got %d, %v; want 2", pruned, err)
	}
	st, _ := s.Stats(ctx)
	if st.Jobs != 1 || st.LastSeq != 3 || st.WebhooksMissed != 0 {
		t.Errorf("stats after prune: got %+v; want 1 job, lastSeq 3, 0 missed", st)
	}
	jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: 10})
	if err != nil || len(jobs) != 1 {
		t.Errorf("ListJobs: got %d, %v; want 1", len(jobs), err)
	}
}

// TestMigrationRace opens three stores at once on a fresh schema: the
// advisory lock lets one migrate and the others find the work done.
func TestMigrationRace(t *testing.T) {
	dbURL := freshSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), dbURL, Options{})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(context.Background(), pgtest.Direct(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, distinct int
	if err := conn.QueryRow(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT name) FROM schema_migrations`).
		Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct || n == 0 {
		t.Errorf("schema_migrations: got %d rows, %d names; want each migration once", n, distinct)
	}
}

// writerEnv makes the test binary a writer process for
// TestConcurrentWritersFeed: "url|prefix|count".
const writerEnv = "NOUVELHOOK_TEST_PG_WRITER"

// TestWriterProcess is the body of one writer process; it does nothing in a
// normal run.
func TestWriterProcess(t *testing.T) {
	spec := os.Getenv(writerEnv)
	if spec == "" {
		t.Skip("runs only as a writer process of TestConcurrentWritersFeed")
	}
	parts := strings.SplitN(spec, "|", 3)
	count, _ := strconv.Atoi(parts[2])
	s := openTest(t, parts[0], Options{noListen: true})
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += workers {
				if _, err := s.RecordWebhook(context.Background(), completed(fmt.Sprintf("%s-%d", parts[1], i))); err != nil {
					t.Errorf("write %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestConcurrentWritersFeed runs writer processes, each with its own pool,
// ending jobs at once, while a reader follows the feed the whole time: every
// seq must be seen exactly once, in order, and none may appear behind the
// reader's cursor.
func TestConcurrentWritersFeed(t *testing.T) {
	dbURL := freshSchema(t)
	reader := openTest(t, dbURL, Options{})
	const procs, each = 3, 300
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|w%d|%d", writerEnv, dbURL, p, each))
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, out)
		cmds = append(cmds, cmd)
	}
	done := make(chan error, 1)
	go func() {
		var errs []error
		for _, c := range cmds {
			errs = append(errs, c.Wait())
		}
		done <- errors.Join(errs...)
	}()
	ctx := context.Background()
	seen := map[string]bool{}
	cursor := int64(0)
	finished := false
	for {
		jobs, last, err := reader.Events(ctx, cursor, 50)
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range jobs {
			if j.Seq != cursor+int64(i)+1 {
				t.Fatalf("after cursor %d, event %d has seq %d; want %d (a gap, or one behind the cursor)",
					cursor, i, j.Seq, cursor+int64(i)+1)
			}
			if seen[j.JobID] {
				t.Fatalf("job %s seen twice", j.JobID)
			}
			seen[j.JobID] = true
		}
		cursor = last
		if finished && len(jobs) == 0 {
			break
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer processes: %v", err)
			}
			finished = true // one more read picks up the rest
		default:
		}
	}
	if len(seen) != procs*each || cursor != procs*each {
		t.Errorf("saw %d jobs up to seq %d; want %d", len(seen), cursor, procs*each)
	}
}

// TestWakeAcrossStores: waits on one store wake on a commit made through
// another store on the same schema, by NOTIFY or, with notifications off,
// by the backstop alone.
func TestWakeAcrossStores(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noListen bool
	}{{"notify", false}, {"backstop", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dbURL := freshSchema(t)
			a := openTest(t, dbURL, Options{})
			b := openTest(t, dbURL, Options{noListen: tc.noListen})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			type result struct {
				what string
				err  error
			}
			results := make(chan result, 3)
			go func() {
				jobs, last, err := b.WaitEvents(ctx, 0, 10)
				if err == nil && (len(jobs) != 1 || last != 1) {
					err = fmt.Errorf("got %d events up to %d; want 1", len(jobs), last)
				}
				results <- result{"WaitEvents", err}
			}()
			go func() {
				events, _, err := b.WaitFeed(ctx, 0, 10)
				if err == nil && (len(events) != 1 || !strings.Contains(string(events[0].JSON), `"jobId":"x"`)) {
					err = fmt.Errorf("got %d events; want x's", len(events))
				}
				results <- result{"WaitFeed", err}
			}()
			go func() {
				j, err := b.WaitJob(ctx, "x")
				if err == nil && !j.Terminal {
					err = fmt.Errorf("job not terminal: %s", j.Status)
				}
				results <- result{"WaitJob", err}
			}()
			if _, err := a.RecordWebhook(context.Background(), completed("x")); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r := <-results
				if r.err != nil {
					t.Errorf("%s: %v", r.what, r.err)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("the waits ended by their deadline, not by the commit")
			}
		})
	}
}

// TestUnreachable: a URL to a closed port fails Open with ErrUnavailable
// and no password in the message.
func TestUnreachable(t *testing.T) {
	pgtest.BaseURL(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const pw = "s3cret-Pa55word"
	_, err = Open(context.Background(), "postgres://postgres:"+pw+"@"+addr+"/test?sslmode=disable&password="+pw, Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("got %v; want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q: want the address and no password", err)
	}
	_, err = Open(context.Background(), "postgres://postgres:"+pw+"@127.0.0.1:notaport/test", Options{})
	if !errors.Is(err, store.ErrInvalid) || strings.Contains(err.Error(), pw) {
		t.Errorf("bad URL: got %v; want ErrInvalid without the password", err)
	}
}

// proxy forwards 127.0.0.1:port to Postgres until cut; while stalled it
// passes nothing, and closes nothing, as a network partition does.
type proxy struct {
	t       *testing.T
	target  string
	mu      sync.Mutex
	l       net.Listener
	conns   []net.Conn
	stalled chan struct{} // closed when not stalled
}

// stall stops (on) or resumes passing bytes.
func (p *proxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.stalled == nil {
		p.stalled = make(chan struct{})
	}
	if !on && p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// pass copies from src to dst, holding what it read while stalled.
func (p *proxy) pass(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.stalled
			p.mu.Unlock()
			if gate != nil {
				<-gate
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) start(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pass(up, c)
			go p.pass(c, up)
		}
	}()
}

func (p *proxy) cut() {
	p.stall(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.l.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// proxied returns the URL of a fresh schema reached through a proxy, the
// proxy, and its address, to start it again at after a cut.
func proxied(t *testing.T) (dbURL string, p *proxy, addr string) {
	u, _ := url.Parse(freshSchema(t))
	p = &proxy{t: t, target: u.Host}
	p.start("127.0.0.1:0")
	addr = p.l.Addr().String()
	t.Cleanup(p.cut)
	u.Host = addr
	return u.String(), p, addr
}

// TestOutage cuts the way to Postgres under a running store: writes fail
// with ErrUnavailable (a webhook gets 503), Failed and Ping say why, and
// once Postgres is back the store recovers by itself.
func TestOutage(t *testing.T) {
	dbURL, p, addr := proxied(t)
	u, _ := url.Parse(dbURL)
	u.User = url.UserPassword(u.User.Username(), "pw-not-needed-by-trust")
	s := openTest(t, u.String(), Options{})
	ctx := context.Background()
	if _, err := s.RecordWebhook(ctx, completed("before")); err != nil {
		t.Fatal(err)
	}
	p.cut()
	_, err := s.RecordWebhook(ctx, completed("during"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write during the outage: got %v; want ErrUnavailable", err)
	}
	if err := s.Failed(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Failed during the outage: got %v; want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "pw-not-needed") {
		t.Errorf("Ping during the outage: got %v; want ErrUnavailable without the password", err)
	}
	p.start(addr)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the outage: %v", err)
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after the outage: %v", err)
	}
	if out, err := s.RecordWebhook(ctx, completed("during")); err != nil || out != store.OutcomeAccepted {
		t.Errorf("write after the outage: got %q, %v", out, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if jobs, _, err := s.WaitEvents(wctx, 1, 10); err != nil || len(jobs) != 1 {
		t.Errorf("feed after the outage: got %d events, %v; want 1", len(jobs), err)
	}
}

// BenchmarkRecordWebhook ends one new job per delivery from 64 goroutines
// at once: the ends serialise on feed_counter, so this is the ceiling of
// one replica without batching.
// With forward=true each end also queues the job's forward.
func BenchmarkRecordWebhook(b *testing.B) {
	for _, forward := range []bool{false, true} {
		b.Run(fmt.Sprint("forward=", forward), func(b *testing.B) {
			s := openTest(b, freshSchema(b), Options{Forward: forward})
			var n atomic.Int64
			b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.RecordWebhook(context.Background(), completed(fmt.Sprintf("bench-%d", n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestFirstReportWinsAcrossStores delivers conflicting reports of the same
// jobs through two stores at once: each job ends once, with one accepted
// report, and the counters agree with the rows.
func TestFirstReportWinsAcrossStores(t *testing.T) {
	dbURL := freshSchema(t)
	stores := []*Store{openTest(t, dbURL, Options{}), openTest(t, dbURL, Options{})}
	const jobs, workers = 40, 8
	statuses := []store.Status{store.StatusCompleted, store.StatusFailed, store.StatusPartial}
	var accepted [jobs]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for i := range jobs {
				id := fmt.Sprintf("job-%d", i)
				st := statuses[(i+w)%len(statuses)]
				d := store.WebhookDelivery{Body: []byte(id + string(st)), ReceivedAt: time.Now(), Attempt: 1,
					Report: &store.Report{JobID: id, Status: st}}
				out, err := s.RecordWebhook(context.Background(), d)
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
				if out == store.OutcomeAccepted {
					accepted[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range accepted {
		if got := accepted[i].Load(); got != 1 {
			t.Errorf("job-%d: %d accepted reports; want 1", i, got)
		}
	}
	st, err := stores[0].Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byStatus := 0
	for _, n := range st.ByStatus {
		byStatus += n
	}
	if st.Jobs != jobs || byStatus != jobs || st.LastSeq != jobs || st.Deliveries != jobs*workers ||
		st.Duplicates != jobs*(workers-1) || st.BySource["webhook"] != jobs {
		t.Errorf("stats: got %+v; want %d jobs, seq %d, %d deliveries of which %d duplicates",
			st, jobs, jobs, jobs*workers, jobs*(workers-1))
	}
}

// TestBatchIsolation: an op that fails in a shared transaction sinks only
// itself; the others, retried alone, commit.
func TestBatchIsolation(t *testing.T) {
	s := openTest(t, freshSchema(t), Options{})
	var batch []*op
	for i := range 5 {
		d := completed(fmt.Sprintf("ok-%d", i))
		fn := func(t *txn) error {
			out, row, err := t.endJob(d.Report, "[]", store.SourceWebhook)
			if err != nil {
				return err
			}
			return t.insertDelivery(d, []byte(d.JobID), row, out)
		}
		if i == 2 {
			fn = func(t *txn) error {
				_, err := t.tx.Exec(t.ctx, `SELECT 1/0`)
				return err
			}
		}
		batch = append(batch, &op{fn: fn, done: make(chan error, 1), deadline: time.Now().Add(writeTimeout)})
	}
	s.commit(batch)
	for i, o := range batch {
		err := <-o.done
		if wantErr := i == 2; (err != nil) != wantErr {
			t.Errorf("op %d: got %v; want error %v", i, err, wantErr)
		}
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Jobs != 4 || st.LastSeq != 4 {
		t.Errorf("stats: got %+v, %v; want 4 jobs, seq 4", st, err)
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after a bad op: %v; want nil (the database is fine)", err)
	}
}

// TestNewEndsFallBackOneByOne: when the statement that writes a batch's
// new ends fails, nothing of it is kept and its webhooks are written one by
// one, so one bad delivery fails alone and the others count once each.
func TestNewEndsFallBackOneByOne(t *testing.T) {
	s := openTest(t, freshSchema(t), Options{})
	var batch []*op
	for i := range 5 {
		d := completed(fmt.Sprintf("ok-%d", i))
		if i == 2 {
			d.Report.Stage = "bad\x00" // text may not hold NUL: the statement fails
		}
		o := endOp(d, []byte(d.JobID), "[]")
		o.done, o.deadline = make(chan error, 1), time.Now().Add(writeTimeout)
		batch = append(batch, o)
	}
	s.commit(batch)
	for i, o := range batch {
		err := <-o.done
		if wantErr := i == 2; (err != nil) != wantErr || (!wantErr && o.outcome != store.OutcomeAccepted) {
			t.Errorf("op %d: got %s, %v; want accepted, or an error for the bad one", i, o.outcome, err)
		}
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Jobs != 4 || st.Deliveries != 4 || st.Duplicates != 0 || st.LastSeq != 4 {
		t.Errorf("stats: got %+v, %v; want 4 jobs, 4 deliveries, no duplicates, seq 4", st, err)
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after a bad delivery: %v; want nil (the database is fine)", err)
	}
}

// TestWakeCost: commits on another store wake the waiting job waiters of
// this one with one read per refresh, not one per waiter: 100 waiters on
// jobs that do not end, then 20 ends elsewhere.
func TestWakeCost(t *testing.T) {
	dbURL := freshSchema(t)
	a := openTest(t, dbURL, Options{})
	b := openTest(t, dbURL, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const waiters, ends = 100, 20
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.WaitJob(ctx, fmt.Sprintf("never-%d", i))
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "waiters parked", func() bool {
		b.feed.mu.Lock()
		defer b.feed.mu.Unlock()
		return len(b.feed.jobs) == waiters
	})
	before := b.feed.reads.Load() // each waiter's own first read is counted
	for i := range ends {
		if _, err := a.RecordWebhook(context.Background(), completed(fmt.Sprintf("other-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "b's tail reaching the last end", func() bool {
		b.feed.mu.Lock()
		defer b.feed.mu.Unlock()
		return b.feed.last == ends
	})
	if got := b.feed.reads.Load() - before; got >= waiters {
		t.Errorf("%d ends made %d reads for %d waiters; want fewer than one per waiter", ends, got, waiters)
	}
}

// waitFor polls cond until it holds, failing after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSweepsAcrossStores: two stores expiring, flagging and pruning the
// same jobs at once act on each job once, and the counters agree.
func TestSweepsAcrossStores(t *testing.T) {
	dbURL := freshSchema(t)
	stores := []*Store{openTest(t, dbURL, Options{}), openTest(t, dbURL, Options{})}
	ctx := context.Background()
	const jobs = 60
	for i := range jobs {
		if _, _, err := stores[0].Track(ctx, fmt.Sprintf("t-%d", i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	var expired, pruned atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			ids, err := s.ExpireJobs(ctx, cutoff)
			if err != nil {
				t.Errorf("ExpireJobs: %v", err)
			}
			expired.Add(int64(len(ids)))
		})
	}
	wg.Wait()
	for _, s := range stores {
		wg.Go(func() {
			for {
				n, err := s.Prune(ctx, time.Now().Add(time.Hour), 7)
				if err != nil {
					t.Errorf("Prune: %v", err)
				}
				pruned.Add(int64(n))
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := stores[1].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if expired.Load() != jobs || pruned.Load() != jobs || st.Jobs != 0 || st.LastSeq != jobs ||
		st.ByStatus["expired"] != 0 || st.BySource["poll"] != 0 {
		t.Errorf("expired %d, pruned %d, stats %+v; want %d, %d and an empty log at seq %d",
			expired.Load(), pruned.Load(), st, jobs, jobs, jobs)
	}
}

// TestOutageUnderLoad cuts the way to Postgres while writers keep
// delivering, then restores it: every write either failed with
// ErrUnavailable or is in the log afterwards, and writes succeed again
// without a restart.
func TestOutageUnderLoad(t *testing.T) {
	dbURL, p, addr := proxied(t)
	s := openTest(t, dbURL, Options{})
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	var acked []string
	var failed atomic.Int64
	var wg sync.WaitGroup
	var n atomic.Int64
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				id := fmt.Sprintf("load-%d", n.Add(1))
				_, err := s.RecordWebhook(context.Background(), completed(id))
				switch {
				case err == nil:
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				case errors.Is(err, store.ErrUnavailable):
					failed.Add(1)
				default:
					t.Errorf("%s: %v; want nil or ErrUnavailable", id, err)
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, "writes before the outage", func() bool { return count() >= 200 })
	p.cut()
	waitFor(t, "writes failing", func() bool { return failed.Load() >= 50 })
	p.start(addr)
	during := count()
	waitFor(t, "writes succeeding again", func() bool { return count() >= during+200 })
	stop()
	wg.Wait()
	for _, id := range acked {
		j, err := s.Job(context.Background(), id)
		if err != nil || !j.Terminal {
			t.Fatalf("acknowledged %s: got %+v, %v; want it ended", id, j, err)
		}
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after recovery: %v", err)
	}
	t.Logf("%d writes acknowledged, %d refused during the outage", len(acked), failed.Load())
}
