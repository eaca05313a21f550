package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The binary the replica tests run, built once per test run.
var replicaBuild struct {
	once sync.Once
	bin  string
	err  error
}

// replicaBinary builds this package's binary once for all the replica
// tests, next to the test binary: `go test` runs that from a temporary
// folder that it removes when the run ends.
func replicaBinary(t *testing.T) string {
	t.Helper()
	replicaBuild.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			replicaBuild.err = fmt.Errorf("no go command to build the binary: %w", err)
			return
		}
		self, err := os.Executable()
		if err != nil {
			replicaBuild.err = err
			return
		}
		bin := filepath.Join(filepath.Dir(self), "nouvelhook-replica")
		cmd := exec.Command(gobin, "build", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			replicaBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		replicaBuild.bin = bin
	})
	if replicaBuild.err != nil {
		t.Fatal(replicaBuild.err)
	}
	return replicaBuild.bin
}

// spawnReplica starts `nouvelhook serve` on db without waiting for it to
// listen; awaitListening does that. It is killed when the test ends.
func spawnReplica(t *testing.T, bin, db string, env ...string) *child {
	t.Helper()
	c := &child{log: &syncBuffer{}, exited: make(chan struct{})}
	c.proc = exec.Command(bin, "serve")
	c.proc.Env = append(crashEnviron(),
		"NOUVEL_WEBHOOK_SECRET="+testSecret,
		"NOUVELHOOK_LISTEN=127.0.0.1:0",
		"NOUVELHOOK_ADMIN_LISTEN=127.0.0.1:0",
		"NOUVELHOOK_DB="+db,
		"NOUVELHOOK_LOG_FORMAT=json",
		"NOUVELHOOK_LOG_LEVEL=info",
	)
	c.proc.Env = append(c.proc.Env, env...)
	c.proc.Stdout, c.proc.Stderr = io.Discard, c.log
	if err := c.proc.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		c.err = c.proc.Wait()
		close(c.exited)
	}()
	c.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
	t.Cleanup(func() {
		c.proc.Process.Kill()
		<-c.exited
		c.client.CloseIdleConnections()
	})
	return c
}

// awaitListening waits until the child's log says where it listens.
func (c *child) awaitListening(t *testing.T) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if pub, adm, ok := listeningAddrs(c.log.String()); ok {
			c.public, c.admin = "http://"+pub, "http://"+adm
			return
		}
		select {
		case <-c.exited:
			t.Fatalf("serve exited before listening: %v\n%s", c.err, logTail(c.log))
		case <-deadline:
			t.Fatalf("serve did not listen within 20s:\n%s", logTail(c.log))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// startReplicas starts n replicas on db at the same moment, so that they
// migrate an empty schema together, and waits until all of them listen.
func startReplicas(t *testing.T, bin, db string, n int, env ...string) []*child {
	t.Helper()
	reps := make([]*child, n)
	for i := range reps {
		reps[i] = spawnReplica(t, bin, db, env...)
	}
	for _, c := range reps {
		c.awaitListening(t)
	}
	return reps
}

// getStatus GETs url with c's client and returns the status and body.
func (c *child) getStatus(url string) (int, string, error) {
	resp, err := c.client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// pgBaseHost is the host:port of NOUVELHOOK_TEST_POSTGRES.
func pgBaseHost(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(os.Getenv("NOUVELHOOK_TEST_POSTGRES"))
	if err != nil || u.Host == "" {
		t.Fatalf("NOUVELHOOK_TEST_POSTGRES: want a postgres:// URL with a host, got %v", err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5432")
	}
	return u.Host
}

// pgProxy is a TCP proxy between replicas and Postgres: down closes its
// listener and every connection through it, which to a replica is Postgres
// gone; up listens again on the same port. stall(true) stops it passing
// bytes, or closes, either way, keeping every socket open, which is a
// network partition: neither side learns anything until stall(false).
type pgProxy struct {
	target string
	addr   string // 127.0.0.1:port, fixed at the first up

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	stalled bool
	wg      sync.WaitGroup // the accept loop and the copies
}

// newPGProxy starts a proxy to target on a free loopback port; it is
// brought down when the test ends.
func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	p := &pgProxy{target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	if err := p.up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.down)
	return p
}

// up listens on the proxy's address and serves connections until down.
func (p *pgProxy) up() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("proxy listen %s: %w", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if p.isStalled() {
				p.track(in) // held open, never answered
				continue
			}
			out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !p.track(in, out) {
				continue
			}
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if !p.flowing() {
						break // down during a stall
					}
					if n > 0 {
						if _, err := dst.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				dst.Close()
				src.Close()
			}
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return nil
}

// track files the ends of a new connection, or closes them if the proxy
// went down meanwhile.
func (p *pgProxy) track(ends ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range ends {
		if p.ln == nil {
			c.Close()
		} else {
			p.conns[c] = struct{}{}
		}
	}
	return p.ln != nil
}

// stall stops (true) or resumes (false) the flow of bytes and closes.
func (p *pgProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = on
}

func (p *pgProxy) isStalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// flowing waits while the proxy is stalled, and reports whether it is
// still up.
func (p *pgProxy) flowing() bool {
	for {
		p.mu.Lock()
		stalled, up := p.stalled, p.ln != nil
		p.mu.Unlock()
		if !up || !stalled {
			return up
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// down closes the listener and every connection through the proxy, and
// returns once no copy runs.
func (p *pgProxy) down() {
	p.mu.Lock()
	p.stalled = false
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// sseEvent is one event of the change feed's stream.
type sseEvent struct {
	id    int64
	jobID string
	at    time.Time // when the test read it
}

// followSSE opens the change feed as an event stream on c's admin listener
// after seq after, and sends each job event on the returned channel until
// ctx ends or the stream fails; the error, if any, comes on errc.
func followSSE(ctx context.Context, c *child, after int64) (<-chan sseEvent, <-chan error, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.admin+"/v1/events?after="+strconv.FormatInt(after, 10), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("event stream: got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events, errc := make(chan sseEvent, 4096), make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var cur sseEvent
		var kind string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if kind == "job" {
					cur.at = time.Now()
					select {
					case events <- cur:
					case <-ctx.Done():
						return
					}
				}
				cur, kind = sseEvent{}, ""
			case strings.HasPrefix(line, "id: "):
				cur.id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "event: "):
				kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var j struct {
					JobID string `json:"jobId"`
					Seq   int64  `json:"seq"`
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &j); err != nil {
					errc <- fmt.Errorf("event stream: data %q: %v", line, err)
					return
				}
				cur.jobID = j.JobID
				if j.Seq != cur.id {
					errc <- fmt.Errorf("event stream: id %d carries a job with seq %d", cur.id, j.Seq)
					return
				}
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			errc <- err
		}
	}()
	return events, errc, nil
}

// median of ds, which it sorts.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
