package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// subscribers are the idle clients of the admin listener: event streams
// (text/event-stream on /v1/events), long-polls on /v1/events?wait=, which
// poll again after each answer, and long-polls on jobs that never end.
// Each stream and each event long-poll checks that the seqs it gets follow
// one another with no gap, repeat or reordering.
type subscribers struct {
	streams []*follower // SSE
	polls   []*follower // /v1/events?wait=
	jobs    []net.Conn
	early   atomic.Int64 // job long-polls answered before they were closed
	closing atomic.Bool
	wg      sync.WaitGroup
}

// follower is one consumer of the change feed.
type follower struct {
	from   int64
	last   atomic.Int64
	events atomic.Int64
	mu     sync.Mutex
	err    string
	conn   net.Conn
}

func (f *follower) fail(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == "" {
		f.err = fmt.Sprintf(format, args...)
	}
}

func (f *follower) problem() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// see records the event with this seq.
func (f *follower) see(seq int64) {
	if last := f.last.Load(); seq != last+1 {
		f.fail("got seq %d after %d", seq, last)
	}
	f.last.Store(seq)
	f.events.Add(1)
}

// openSubscribers connects every subscriber with the feed cursor from, and
// returns once every event stream has its answer's headers.
func openSubscribers(ctx context.Context, admin, runID string, from int64, nStreams, nPolls, nJobs int) (*subscribers, error) {
	s := &subscribers{}
	ready := make(chan error, nStreams)
	for range nStreams {
		f := &follower{from: from}
		f.last.Store(from)
		c, err := net.DialTimeout("tcp", admin, 5*time.Second)
		if err != nil {
			s.close()
			return nil, err
		}
		f.conn = c
		s.streams = append(s.streams, f)
		s.wg.Go(func() { s.stream(f, admin, ready) })
	}
	for range nPolls {
		f := &follower{from: from}
		f.last.Store(from)
		c, err := net.DialTimeout("tcp", admin, 5*time.Second)
		if err != nil {
			s.close()
			return nil, err
		}
		f.conn = c
		s.polls = append(s.polls, f)
		s.wg.Go(func() { s.poll(f, admin) })
	}
	for i := range nJobs {
		c, err := net.DialTimeout("tcp", admin, 5*time.Second)
		if err != nil {
			s.close()
			return nil, err
		}
		s.jobs = append(s.jobs, c)
		s.wg.Go(func() { s.waitJob(c, admin, fmt.Sprintf("%s-never-%d", runID, i)) })
	}
	for range nStreams {
		select {
		case err := <-ready:
			if err != nil {
				s.close()
				return nil, err
			}
		case <-ctx.Done():
			s.close()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

// stream follows /v1/events as server-sent events, reading only the id lines.
func (s *subscribers) stream(f *follower, admin string, ready chan<- error) {
	req := "GET /v1/events?after=" + strconv.FormatInt(f.from, 10) + "&limit=500 HTTP/1.1\r\nHost: " + admin +
		"\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := io.WriteString(f.conn, req); err != nil {
		ready <- err
		return
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(f.conn, 16<<10), nil)
	if err != nil {
		ready <- fmt.Errorf("event stream: %w", err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		ready <- fmt.Errorf("event stream: status %d", resp.StatusCode)
		return
	}
	ready <- nil
	rd := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := rd.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long data line
		}
		if err != nil {
			if !s.closing.Load() {
				f.fail("stream ended: %v", err)
			}
			return
		}
		if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			seq, err := strconv.ParseInt(string(bytes.TrimSpace(id)), 10, 64)
			if err != nil {
				f.fail("bad id line %q", line)
				return
			}
			f.see(seq)
		}
	}
}

// poll long-polls /v1/events?wait= on one keep-alive connection, polling
// again from the answer's last seq. It checks that an answer of n events
// spans exactly n seqs.
func (s *subscribers) poll(f *follower, admin string) {
	br := bufio.NewReaderSize(f.conn, 16<<10)
	var body bytes.Buffer
	for !s.closing.Load() {
		cursor := f.last.Load()
		req := "GET /v1/events?after=" + strconv.FormatInt(cursor, 10) + "&limit=500&wait=60s HTTP/1.1\r\nHost: " + admin + "\r\n\r\n"
		if _, err := io.WriteString(f.conn, req); err != nil {
			if !s.closing.Load() {
				f.fail("write: %v", err)
			}
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			body.Reset()
			_, err = body.ReadFrom(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			if !s.closing.Load() {
				f.fail("read: %v", err)
			}
			return
		}
		if resp.StatusCode != http.StatusOK {
			f.fail("status %d: %s", resp.StatusCode, bytes.TrimSpace(body.Bytes()))
			return
		}
		b := body.Bytes()
		i := bytes.LastIndex(b, []byte(`"last":`))
		if i < 0 {
			f.fail("no last in %q", b)
			return
		}
		end := i + len(`"last":`)
		for end < len(b) && b[end] >= '0' && b[end] <= '9' {
			end++
		}
		last, err := strconv.ParseInt(string(b[i+len(`"last":`):end]), 10, 64)
		if err != nil {
			f.fail("bad last in %q", b)
			return
		}
		n := int64(bytes.Count(b, []byte(`"seq":`)))
		if last-cursor != n {
			f.fail("after %d: %d events up to %d", cursor, n, last)
		}
		f.last.Store(last)
		f.events.Add(n)
	}
}

// waitJob long-polls a job that never ends; it must not be answered before
// it is closed.
func (s *subscribers) waitJob(c net.Conn, admin, id string) {
	req := "GET /v1/jobs/" + id + "?wait=5m HTTP/1.1\r\nHost: " + admin + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return
	}
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil || !s.closing.Load() {
		s.early.Add(1)
	}
}

// close closes every connection and waits for the readers.
func (s *subscribers) close() {
	s.closing.Store(true)
	for _, f := range append(append([]*follower(nil), s.streams...), s.polls...) {
		if f.conn != nil {
			f.conn.Close()
		}
	}
	for _, c := range s.jobs {
		c.Close()
	}
	s.wg.Wait()
}

// caughtUp waits until every follower has seen up to seq, or the deadline.
func (s *subscribers) caughtUp(ctx context.Context, seq int64, limit time.Duration) (behind int) {
	deadline := time.Now().Add(limit)
	for {
		behind = 0
		for _, f := range append(append([]*follower(nil), s.streams...), s.polls...) {
			if f.last.Load() < seq && f.problem() == "" {
				behind++
			}
		}
		if behind == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return behind
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// feedLast reads the feed's newest seq from the admin API, paging from
// after.
func feedLast(ctx context.Context, admin string, after int64) (int64, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			"http://"+admin+"/v1/events?limit=500&after="+strconv.FormatInt(after, 10), nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var page struct {
			Events []json.RawMessage `json:"events"`
			Last   int64             `json:"last"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("GET /v1/events: %d: %w", resp.StatusCode, err)
		}
		if len(page.Events) == 0 {
			return page.Last, nil
		}
		after = page.Last
	}
}
