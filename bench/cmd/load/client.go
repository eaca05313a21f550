package main

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

// workerState is one connection's job-id sequence for a target. It outlives
// a phase, so ids stay new across warm-up and rounds.
type workerState struct {
	index int
	runID string
	seq   uint64
	// acked are the new job ids this worker got a 200 for; duplicates are
	// drawn from them.
	acked []string
	rng   *rand.Rand
}

// phaseResult is what one timed phase against one target measured.
type phaseResult struct {
	ok         int64           // 200 answers, as expected
	okNew      int64           // of which for a new job
	errors     int64           // transport errors and timeouts
	badStatus  map[int]int64   // answers other than 200, by status
	badAnswer  int64           // 200 whose body was not the expected answer
	latencies  []time.Duration // of every 200, sorted by finish
	elapsed    time.Duration   // first request sent to last answer read
	firstError string
}

func (r *phaseResult) failures() int64 {
	n := r.errors + r.badAnswer
	for _, c := range r.badStatus {
		n += c
	}
	return n
}

// merge adds o's counts and latencies to r.
func (r *phaseResult) merge(o *phaseResult) {
	r.addCounts(o)
	r.latencies = append(r.latencies, o.latencies...)
}

// addCounts adds o's counts, not its latencies, to r.
func (r *phaseResult) addCounts(o *phaseResult) {
	r.ok += o.ok
	r.okNew += o.okNew
	r.errors += o.errors
	r.badAnswer += o.badAnswer
	for s, c := range o.badStatus {
		r.badStatus[s] += c
	}
	if r.firstError == "" {
		r.firstError = o.firstError
	}
}

// loadSpec is one phase: conns closed-loop connections posting to addrs
// until the duration passes or maxRequests have been sent.
type loadSpec struct {
	// addrs are the replicas' public listeners: worker i connects to
	// addrs[i % len(addrs)], so the connections are spread round-robin.
	addrs       []string
	secret      string
	duration    time.Duration
	maxRequests int64
	timeout     time.Duration
	dupShare    float64
	// ordered: job ids come from one increasing sequence (cuid-like)
	// rather than one per worker (spread like UUIDs).
	ordered bool
	next    *atomic.Uint64
	// checkDup: the answer's duplicate flag must say whether the job was
	// sent before. Only a real store knows; the baseline always says false.
	checkDup bool
}

// runPhase runs one phase with the given workers (one connection each):
// it dials every connection first, then starts them together, so the clock
// covers requests only.
func runPhase(ctx context.Context, spec loadSpec, workers []*workerState) (*phaseResult, error) {
	conns := make([]*clientConn, len(workers))
	for i, w := range workers {
		c, err := dial(spec.addr(w), spec.timeout)
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
	end := start.Add(spec.duration)
	results := make([]*phaseResult, len(workers))
	finished := make([]time.Time, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			results[i] = w.run(ctx, spec, conns[i], end, &sent)
			finished[i] = time.Now()
		})
	}
	wg.Wait()
	total := &phaseResult{badStatus: map[int]int64{}}
	last := start
	for i, r := range results {
		total.merge(r)
		if finished[i].After(last) {
			last = finished[i]
		}
	}
	total.elapsed = last.Sub(start)
	return total, nil
}

// run is one worker's closed loop: send, wait for the answer, check it,
// record its latency, repeat.
func (w *workerState) run(ctx context.Context, spec loadSpec, c *clientConn, end time.Time, sent *atomic.Int64) *phaseResult {
	r := &phaseResult{badStatus: map[int]int64{}, latencies: make([]time.Duration, 0, 4096)}
	signer := bench.NewSigner(spec.secret)
	var body, sig, req, want []byte
	addr := spec.addr(w)
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for ctx.Err() == nil && time.Now().Before(end) && sent.Add(1) <= spec.maxRequests {
		var id string
		dup := len(w.acked) > 0 && spec.dupShare > 0 && w.rng.Float64() < spec.dupShare
		if dup {
			id = w.acked[w.rng.IntN(len(w.acked))]
		} else if spec.ordered {
			id = bench.OrderedJobID(w.runID, spec.next.Add(1))
		} else {
			w.seq++
			id = bench.JobID(w.runID, w.index, w.seq)
		}
		body = bench.AppendBody(body[:0], id)
		sig = signer.AppendSignature(sig[:0], body)
		req = appendRequest(req[:0], addr, sig, body)
		want = append(append(append(want[:0], `{"received":true,"jobId":"`...), id...),
			`","duplicate":`+strconv.FormatBool(dup && spec.checkDup)+`}`...)

		if c == nil {
			var err error
			if c, err = dial(addr, spec.timeout); err != nil {
				r.noteError(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		t0 := time.Now()
		status, answer, keep, err := c.do(req, t0.Add(spec.timeout))
		lat := time.Since(t0)
		if !keep || err != nil {
			c.close()
			c = nil
		}
		switch {
		case err != nil:
			r.noteError(err)
		case status != http.StatusOK:
			r.badStatus[status]++
			if r.firstError == "" {
				r.firstError = fmt.Sprintf("status %d: %s", status, bytes.TrimSpace(answer))
			}
		case !bytes.HasPrefix(answer, want):
			r.badAnswer++
			if r.firstError == "" {
				r.firstError = fmt.Sprintf("answer %q, want %q", bytes.TrimSpace(answer), want)
			}
		default:
			r.ok++
			r.latencies = append(r.latencies, lat)
			if !dup {
				r.okNew++
				w.acked = append(w.acked, id)
			}
		}
	}
	return r
}

// addr is the listener worker w connects to.
func (spec loadSpec) addr(w *workerState) string { return spec.addrs[w.index%len(spec.addrs)] }

func (r *phaseResult) noteError(err error) {
	r.errors++
	if r.firstError == "" {
		r.firstError = err.Error()
	}
}

// newWorkers returns n workers for a target whose job ids all start with
// runID (bench.RunID), so no two targets, phases or runs share a job id.
func newWorkers(n int, runID string) []*workerState {
	ws := make([]*workerState, n)
	for i := range ws {
		ws[i] = &workerState{index: i, runID: runID,
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
