package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
)

// webhookPath is nouvelhook's default webhook path.
const webhookPath = "/webhooks/nouvel"

// ingest is the webhook load: conns closed-loop keep-alive connections, each
// posting a signed job.completed for a new job as soon as its last answer
// came, as bench/cmd/load does. Every accepted delivery is one feed event.
type ingest struct {
	addr, secret string
	runID        string
	next         []uint64 // per connection, so ids never repeat across phases
}

// phaseResult is one timed phase of the ingest load.
type phaseResult struct {
	ok        int64
	failed    int64
	firstErr  string
	latencies []time.Duration
	elapsed   time.Duration
}

func (g *ingest) run(ctx context.Context, conns int, d time.Duration) (*phaseResult, error) {
	if len(g.next) < conns {
		g.next = append(g.next, make([]uint64, conns-len(g.next))...)
	}
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return nil, err
		}
		cs[i] = c
	}
	results := make([]*phaseResult, conns)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { results[i] = g.worker(ctx, i, cs[i], end) })
	}
	wg.Wait()
	total := &phaseResult{elapsed: time.Since(start)}
	for _, r := range results {
		total.ok += r.ok
		total.failed += r.failed
		total.latencies = append(total.latencies, r.latencies...)
		if total.firstErr == "" {
			total.firstErr = r.firstErr
		}
	}
	slices.Sort(total.latencies)
	return total, nil
}

func (g *ingest) worker(ctx context.Context, i int, c net.Conn, end time.Time) *phaseResult {
	r := &phaseResult{latencies: make([]time.Duration, 0, 8192)}
	signer := bench.NewSigner(g.secret)
	br := bufio.NewReaderSize(c, 4096)
	var body, sig, req []byte
	var buf bytes.Buffer
	fail := func(msg string) {
		r.failed++
		if r.firstErr == "" {
			r.firstErr = msg
		}
	}
	defer func() { c.Close() }()
	for ctx.Err() == nil && time.Now().Before(end) {
		g.next[i]++
		id := bench.JobID(g.runID, i, g.next[i])
		body = bench.AppendBody(body[:0], id)
		sig = signer.AppendSignature(sig[:0], body)
		req = append(req[:0], "POST "+webhookPath+" HTTP/1.1\r\nHost: "+g.addr+
			"\r\nContent-Type: application/json\r\nX-Nouvel-Signature: "...)
		req = append(req, sig...)
		req = append(req, "\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(append(req, "\r\n\r\n"...), body...)

		t0 := time.Now()
		c.SetDeadline(t0.Add(10 * time.Second))
		if _, err := c.Write(req); err != nil {
			fail(err.Error())
			return r
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			fail(err.Error())
			return r
		}
		buf.Reset()
		_, err = buf.ReadFrom(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		lat := time.Since(t0)
		switch {
		case err != nil:
			fail(err.Error())
			return r
		case resp.StatusCode != http.StatusOK || !bytes.Contains(buf.Bytes(), []byte(`"duplicate":false`)):
			fail(fmt.Sprintf("status %d: %s", resp.StatusCode, bytes.TrimSpace(buf.Bytes())))
		default:
			r.ok++
			r.latencies = append(r.latencies, lat)
		}
		if resp.Close {
			return r
		}
	}
	return r
}

// percentile is the exact q-quantile of sorted samples (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
