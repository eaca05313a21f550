package handler

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// TestEventStreamsDeliverEveryEventOnceInOrder runs event streams on the real
// admin server while writers commit concurrently. Streams start from the
// beginning, from a Last-Event-ID, and with small pages; each must get every
// event after its start once, in seq order, with data matching its id.
func TestEventStreamsDeliverEveryEventOnceInOrder(t *testing.T) {
	const (
		backlog  = 5
		writers  = 4
		perWrite = 40
		total    = backlog + writers*perWrite
	)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Server.Serve(ln)
	t.Cleanup(func() { e.Server.Close() })
	addr := ln.Addr().String()

	deliver := func(id string) {
		body := []byte(`{"event":"job.completed","jobId":"` + id + `","status":"completed","totalProjects":1,"completedProjects":1,"failedProjects":0}`)
		report, jobID, err := ParseEvent(body)
		if err == nil {
			_, err = st.RecordWebhook(context.Background(), store.WebhookDelivery{
				Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: report, JobID: jobID})
		}
		if err != nil {
			t.Errorf("deliver %s: %v", id, err)
		}
	}
	for i := range backlog {
		deliver(fmt.Sprintf("backlog-%d", i))
	}

	// A deadline, so that a stream that misses an event fails the test
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	streams := []struct {
		query       string
		lastEventID string
		from        int64
	}{
		{"", "", 0},
		{"?limit=1", "", 0},
		{"?limit=3", "", 0},
		{"?after=2", "", 2},
		{"", "4", 4},
		{"?limit=2", "5", 5},
		{"", "", 0},
		{"?limit=500", "1", 1},
	}
	var ready, done sync.WaitGroup
	for i, s := range streams {
		ready.Add(1)
		done.Go(func() {
			opened := false
			defer func() {
				if !opened {
					ready.Done()
				}
			}()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/events"+s.query, nil)
			req.Header.Set("Accept", "text/event-stream")
			if s.lastEventID != "" {
				req.Header.Set("Last-Event-ID", s.lastEventID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			opened = true
			ready.Done()
			last, id := s.from, int64(-1)
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for last < total && sc.Scan() {
				line := sc.Bytes()
				switch {
				case bytes.HasPrefix(line, []byte("id: ")):
					if id, err = strconv.ParseInt(string(line[4:]), 10, 64); err != nil || id != last+1 {
						t.Errorf("stream %d (%s, Last-Event-ID %q): got id %s after %d; want %d", i, s.query, s.lastEventID, line[4:], last, last+1)
						return
					}
				case bytes.HasPrefix(line, []byte("data: ")):
					var j store.Job
					if err := json.Unmarshal(line[6:], &j); err != nil || j.Seq != id || !j.Terminal {
						t.Errorf("stream %d: event %d data %s (%v); want the job at that seq", i, id, line[6:], err)
						return
					}
					last = id
				}
			}
			if last != total {
				t.Errorf("stream %d (%s, Last-Event-ID %q): ended at %d (%v); want %d", i, s.query, s.lastEventID, last, sc.Err(), total)
			}
		})
	}
	ready.Wait()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWrite {
				deliver(fmt.Sprintf("w%d-%d", w, i))
			}
		})
	}
	wg.Wait()
	done.Wait()
}

// TestLongPollEventsAnswersAsThePlainGet: a ?wait= answer, built from the
// shared encoded events, is byte for byte the plain GET's answer.
func TestLongPollEventsAnswersAsThePlainGet(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Server.Serve(ln)
	t.Cleanup(func() { e.Server.Close() })
	get := func(query string) (string, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + "/v1/events" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.Header.Get("Content-Type"), fmt.Sprintf("%d %s", resp.StatusCode, b.String())
	}
	// The first long-poll starts the tail before any event, so the later
	// ones are served from it rather than from the store.
	get("?after=0&wait=1ms")
	for _, id := range []string{"a", "b", "c"} {
		body := []byte(`{"event":"job.completed","jobId":"` + id + `","status":"completed","totalProjects":1,"completedProjects":1,"failedProjects":0,"projects":[{"projectId":"p","title":"t","status":"completed","videoUrl":"https://v/` + id + `"}]}`)
		report, jobID, err := ParseEvent(body)
		if err == nil {
			_, err = st.RecordWebhook(context.Background(), store.WebhookDelivery{
				Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: report, JobID: jobID})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"?after=1", "?after=0&limit=2", "?after=3"} {
		wantType, want := get(q)
		gotType, got := get(q + "&wait=10ms")
		if got != want || gotType != wantType {
			t.Errorf("GET %s&wait=10ms: got %s %q, want %s %q as without wait", q, gotType, got, wantType, want)
		}
	}
}
