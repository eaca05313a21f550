package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/benchsrv"
)

// Worker is one connection's job-id sequence for a target. It outlives
// a phase, so ids stay new across warm-up and rounds.
type Worker struct {
	index int
	runID string
	seq   uint64
	// Acked are the new job ids this worker got a 200 for; duplicates are
	// drawn from them.
	Acked []string
	rng   *rand.Rand
}

// Result is what one timed phase against one target measured.
type Result struct {
	OK         int64           // 200 answers, as expected
	OKNew      int64           // of which for a new job
	Errors     int64           // transport errors and timeouts
	BadStatus  map[int]int64   // answers other than 200, by status
	BadAnswer  int64           // 200 whose body was not the expected answer
	Latencies  []time.Duration // of every 200, sorted by finish
	Elapsed    time.Duration   // first request sent to last answer read
	FirstError string
}

// Failures counts requests that did not get the expected 200.
func (r *Result) Failures() int64 {
	n := r.Errors + r.BadAnswer
	for _, c := range r.BadStatus {
		n += c
	}
	return n
}

// Merge adds o's counts and latencies to r.
func (r *Result) Merge(o *Result) {
	r.AddCounts(o)
	r.Latencies = append(r.Latencies, o.Latencies...)
}

// AddCounts adds o's counts, not its latencies, to r.
func (r *Result) AddCounts(o *Result) {
	r.OK += o.OK
	r.OKNew += o.OKNew
	r.Errors += o.Errors
	r.BadAnswer += o.BadAnswer
	for s, c := range o.BadStatus {
		r.BadStatus[s] += c
	}
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
}

// Spec is one phase: closed-loop connections posting to Addrs
// until Duration passes or MaxRequests have been sent.
type Spec struct {
	// Addrs are the replicas' public listeners: worker i connects to
	// Addrs[i % len(Addrs)], so the connections are spread round-robin.
	Addrs       []string
	Secret      string
	Duration    time.Duration
	MaxRequests int64
	Timeout     time.Duration
	DupShare    float64
	// Ordered: job ids come from one increasing sequence (cuid-like)
	// rather than one per worker (spread like UUIDs); Next is its counter.
	Ordered bool
	Next    *atomic.Uint64
	// CheckDup: the answer's duplicate flag must say whether the job was
	// sent before. Only a real store knows; the baseline always says false.
	CheckDup bool
}

// RunPhase runs one phase with the given workers (one connection each):
// it dials every connection first, then starts them together, so the clock
// covers requests only.
func RunPhase(ctx context.Context, spec Spec, workers []*Worker) (*Result, error) {
	conns := make([]*clientConn, len(workers))
	for i, w := range workers {
		c, err := dial(spec.addr(w), spec.Timeout)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return nil, err
		}
		conns[i] = c
	}
	var sent atomic.Int64
	start := time.Now()
	end := start.Add(spec.Duration)
	results := make([]*Result, len(workers))
	finished := make([]time.Time, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			results[i] = w.run(ctx, spec, conns[i], end, &sent)
			finished[i] = time.Now()
		})
	}
	wg.Wait()
	total := &Result{BadStatus: map[int]int64{}}
	last := start
	for i, r := range results {
		total.Merge(r)
		if finished[i].After(last) {
			last = finished[i]
		}
	}
	total.Elapsed = last.Sub(start)
	return total, nil
}

// run is one worker's closed loop: send, wait for the answer, check it,
// record its latency, repeat.
func (w *Worker) run(ctx context.Context, spec Spec, c *clientConn, end time.Time, sent *atomic.Int64) *Result {
	r := &Result{BadStatus: map[int]int64{}, Latencies: make([]time.Duration, 0, 4096)}
	signer := bench.NewSigner(spec.Secret)
	var body, sig, req, want []byte
	addr := spec.addr(w)
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for ctx.Err() == nil && time.Now().Before(end) && sent.Add(1) <= spec.MaxRequests {
		var id string
		dup := len(w.Acked) > 0 && spec.DupShare > 0 && w.rng.Float64() < spec.DupShare
		if dup {
			id = w.Acked[w.rng.IntN(len(w.Acked))]
		} else if spec.Ordered {
			id = bench.OrderedJobID(w.runID, spec.Next.Add(1))
		} else {
			w.seq++
			id = bench.JobID(w.runID, w.index, w.seq)
		}
		body = bench.AppendBody(body[:0], id)
		sig = signer.AppendSignature(sig[:0], body)
		req = appendRequest(req[:0], addr, sig, body)
		want = append(append(append(want[:0], `{"received":true,"jobId":"`...), id...),
			`","duplicate":`+strconv.FormatBool(dup && spec.CheckDup)+`}`...)

		if c == nil {
			var err error
			if c, err = dial(addr, spec.Timeout); err != nil {
				r.noteError(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		t0 := time.Now()
		status, answer, keep, err := c.do(req, t0.Add(spec.Timeout))
		lat := time.Since(t0)
		if !keep || err != nil {
			c.close()
			c = nil
		}
		switch {
		case err != nil:
			r.noteError(err)
		case status != http.StatusOK:
			r.BadStatus[status]++
			if r.FirstError == "" {
				r.FirstError = fmt.Sprintf("status %d: %s", status, bytes.TrimSpace(answer))
			}
		case !bytes.HasPrefix(answer, want):
			r.BadAnswer++
			if r.FirstError == "" {
				r.FirstError = fmt.Sprintf("answer %q, want %q", bytes.TrimSpace(answer), want)
			}
		default:
			r.OK++
			r.Latencies = append(r.Latencies, lat)
			if !dup {
				r.OKNew++
				w.Acked = append(w.Acked, id)
			}
		}
	}
	return r
}

// addr is the listener worker w connects to.
func (spec Spec) addr(w *Worker) string { return spec.Addrs[w.index%len(spec.Addrs)] }

func (r *Result) noteError(err error) {
	r.Errors++
	if r.FirstError == "" {
		r.FirstError = err.Error()
	}
}

// NewWorkers returns n workers for a target whose job ids all start with
// runID (bench.RunID), so no two targets, phases or runs share a job id.
func NewWorkers(n int, runID string) []*Worker {
	ws := make([]*Worker, n)
	for i := range ws {
		ws[i] = &Worker{index: i, runID: runID,
			rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
	}
	return ws
}

// appendRequest appends a keep-alive HTTP/1.1 webhook POST: the headers
// Nouvel sends, the signature and the body.
func appendRequest(dst []byte, host string, sig, body []byte) []byte {
	dst = append(dst, "POST "+benchsrv.WebhookPath+" HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUser-Agent: nouvelhook-bench\r\nContent-Type: application/json\r\nX-Nouvel-Signature: "...)
	dst = append(dst, sig...)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

// clientConn is one keep-alive connection. Writing requests by hand and
// reading answers with http.ReadResponse keeps the load generator cheap,
// which matters because it shares the cores with the server under test.
type clientConn struct {
	c   net.Conn
	br  *bufio.Reader
	buf bytes.Buffer
}

func dial(addr string, timeout time.Duration) (*clientConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &clientConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// do sends req and reads the answer by deadline. keep is false when the
// connection must not be reused.
func (c *clientConn) do(req []byte, deadline time.Time) (status int, body []byte, keep bool, err error) {
	if err := c.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	if _, err := c.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, err
	}
	return resp.StatusCode, c.buf.Bytes(), !resp.Close, nil
}

func (c *clientConn) close() { c.c.Close() }
