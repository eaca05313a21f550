package forward

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nouvelhook/nouvelhook/store"
)

// statuses answers the n-th request with seq[n-1], and 200 past the end.
func statuses(seq ...int) func(http.ResponseWriter, *http.Request, int, received) int {
	return func(w http.ResponseWriter, r *http.Request, n int, got received) int {
		if n <= len(seq) {
			return seq[n-1]
		}
		return http.StatusOK
	}
}

// gate holds the app's requests until released; the test's end releases
// it, so that a failure never leaves a request held.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

// release lets every held request, and every later one, through.
func (g *gate) release() { g.once.Do(func() { close(g.ch) }) }

// hold holds a request until the gate is released, then answers 200; a
// request the forwarder gives up on is let go.
func (g *gate) hold(w http.ResponseWriter, r *http.Request, n int, got received) int {
	select {
	case <-g.ch:
		return http.StatusOK
	case <-r.Context().Done():
		return 0
	}
}

// TestAppDownThenUp: the app refuses connections at first; the forwards
// wait their step and are delivered once it is up, each once.
func TestAppDownThenUp(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		addr := freeAddr(t)
		opts := h.options()
		opts.URL = "http://" + addr + "/hooks"
		h.end("a")
		h.end("b")
		t0 := h.clk.Now()
		h.start(opts)

		for _, id := range []string{"a", "b"} {
			fw := h.wantForward(id, store.ForwardPending, 1, 0)
			if !strings.Contains(fw.LastError, "connection refused") {
				t.Fatalf("job %s: last error %q, want connection refused", id, fw.LastError)
			}
			h.wantNext(id, t0.Add(time.Minute))
		}
		h.wantOutcomes(map[string]float64{"retry": 2})

		serveAt(t, addr, h.app)
		h.advance(30 * time.Second) // not yet due
		h.wantRequests(0)
		h.advance(30 * time.Second)
		h.wantRequests(2)
		for _, id := range []string{"a", "b"} {
			fw := h.wantForward(id, store.ForwardDelivered, 2, 200)
			if fw.LastError != "" || fw.NextAttemptAt != nil || fw.DeliveredAt == nil || !fw.DeliveredAt.Equal(h.clk.Now()) {
				t.Fatalf("job %s: delivered forward %+v", id, fw)
			}
		}
		h.wantOutcomes(map[string]float64{"retry": 2, "delivered": 2})
		h.wantGauges(0, 0, 0)
		h.advance(time.Hour)
		h.wantRequests(2)
		// Two forwards failing against an app that is down: one warning.
		h.wantLogs(map[string]int{"warn forward failed; retrying": 1, "debug forward failed; retrying": 1,
			"info the app takes forwards again": 1, "debug forward delivered": 1,
			"info forwarding ended jobs to the app": 1})
	})
}

// TestRetriesThenDelivers: 500, 500, then 200: three attempts on the
// schedule, each recorded, and one delivery.
func TestRetriesThenDelivers(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(statuses(500, 500))
		j := h.end("job-1")
		t0 := h.clk.Now()
		h.start(h.options())
		h.wantRequests(1)
		h.wantNext("job-1", t0.Add(time.Minute))
		h.wantGauges(1, 0, 0)

		h.advance(58 * time.Second)
		h.wantRequests(1)
		h.advance(2 * time.Second)
		h.wantRequests(2)
		h.wantNext("job-1", t0.Add(6*time.Minute))
		h.wantGauges(1, 60, 0)
		h.advance(4*time.Minute + 58*time.Second)
		h.wantRequests(2)
		h.advance(2 * time.Second)
		got := h.wantRequests(3)

		h.wantForward("job-1", store.ForwardDelivered, 3, 200)
		if d := h.app.delivered(); len(d) != 1 || d["job-1"] != 1 {
			t.Fatalf("deliveries: %v, want job-1 once", d)
		}
		want, err := Body(j)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			if string(r.body) != string(want) {
				t.Fatalf("request %d: body\n%s\nwant\n%s", i+1, r.body, want)
			}
		}
		att := h.attempts("job-1")
		wantAtt := []struct {
			status int
			state  store.ForwardState
			at     time.Time
		}{{500, store.ForwardPending, t0}, {500, store.ForwardPending, t0.Add(time.Minute)},
			{200, store.ForwardDelivered, t0.Add(6 * time.Minute)}}
		if len(att) != len(wantAtt) {
			t.Fatalf("attempts: got %+v, want 3", att)
		}
		for i, a := range att {
			w := wantAtt[i]
			if a.Attempt != i+1 || a.Status != w.status || a.State != w.state || !a.At.Equal(w.at) {
				t.Fatalf("attempt %d: got %+v, want status %d, state %s at %s", i+1, a, w.status, w.state, w.at)
			}
			if (a.Error == "") != (w.status == 200) || (w.status == 500 && !strings.Contains(a.Error, "500")) {
				t.Fatalf("attempt %d: error %q", i+1, a.Error)
			}
		}
		h.wantOutcomes(map[string]float64{"retry": 2, "delivered": 1})
		h.wantGauges(0, 0, 0)
	})
}

// TestTimeoutRetries: an app that does not answer within the timeout costs
// one failed attempt, and the forward is sent again on the schedule.
func TestTimeoutRetries(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			if n == 1 {
				<-r.Context().Done() // hangs until the forwarder gives up
				return 0
			}
			return http.StatusOK
		})
		h.end("slow")
		opts := h.options()
		opts.Timeout = 300 * time.Millisecond
		start := time.Now()
		h.start(opts)
		if took := time.Since(start); took < opts.Timeout {
			t.Fatalf("the hung attempt ended after %s, before the timeout", took)
		}
		fw := h.wantForward("slow", store.ForwardPending, 1, 0)
		if !strings.Contains(fw.LastError, "no answer within 300ms") {
			t.Fatalf("last error %q, want the timeout", fw.LastError)
		}
		h.advance(time.Minute)
		h.wantForward("slow", store.ForwardDelivered, 2, 200)
		h.wantOutcomes(map[string]float64{"retry": 1, "delivered": 1})
	})
}

// TestTimeoutCoversTheAnswer: an app that sends its 2xx status and then
// never ends the body holds the attempt no longer than the timeout: the
// timeout covers reading the answer, and the 2xx it got in time counts.
func TestTimeoutCoversTheAnswer(t *testing.T) {
	h := newHarness(t, backends()[0])
	h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("{"))
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // the rest never comes
		return 0
	})
	h.end("trickle")
	opts := h.options()
	opts.Timeout = 300 * time.Millisecond
	start := time.Now()
	h.start(opts)
	if took := time.Since(start); took < opts.Timeout || took > opts.Timeout+5*time.Second {
		t.Fatalf("the attempt took %s, want about the %s timeout", took, opts.Timeout)
	}
	h.wantForward("trickle", store.ForwardDelivered, 1, 200)
}

// TestConnectionResetRetries: an app that drops the connection mid-request
// costs one attempt with no status, and the forward is sent again.
func TestConnectionResetRetries(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			if n > 1 {
				return http.StatusOK
			}
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return 0
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, not an orderly close
			}
			conn.Close()
			return 0
		})
		h.end("reset")
		h.start(h.options())
		fw := h.wantForward("reset", store.ForwardPending, 1, 0)
		if !strings.HasPrefix(fw.LastError, "no answer: ") {
			t.Fatalf("last error %q, want no answer", fw.LastError)
		}
		h.advance(time.Minute)
		h.wantForward("reset", store.ForwardDelivered, 2, 200)
		h.wantRequests(2)
	})
}

// TestRedirectNotFollowed: a 301 elsewhere is a failed attempt; the signed
// body never reaches the other server.
func TestRedirectNotFollowed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		var mu sync.Mutex
		other := 0
		elsewhere := serveAt(t, freeAddr(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			other++
			mu.Unlock()
		}))
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			w.Header().Set("Location", elsewhere.URL+"/moved")
			return http.StatusMovedPermanently
		})
		h.end("moved")
		h.start(h.options())
		fw := h.wantForward("moved", store.ForwardPending, 1, 301)
		if !strings.Contains(fw.LastError, "redirects are not followed") {
			t.Fatalf("last error %q", fw.LastError)
		}
		h.advance(time.Minute)
		h.wantForward("moved", store.ForwardPending, 2, 301)
		mu.Lock()
		defer mu.Unlock()
		if other != 0 {
			t.Fatalf("the server redirected to got %d requests, want none", other)
		}
	})
}

// TestGonePausesUntilResumed: a 410 pauses all forwarding, shown by Ready
// and the metrics, and nothing else is sent however long it lasts; resumed
// and kicked, every forward is delivered.
func TestGonePausesUntilResumed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(statuses(http.StatusGone))
		for _, id := range []string{"g1", "g2", "g3"} {
			h.end(id)
		}
		opts := h.options()
		opts.Concurrency = 1
		h.start(opts)

		h.wantRequests(1)
		fw := h.wantForward("g1", store.ForwardPaused, 1, 410)
		err := h.f.Ready()
		if err == nil || !strings.Contains(err.Error(), "410 Gone at "+h.srv.URL+"/hooks/nouvel") ||
			strings.Contains(err.Error(), "app-secret") {
			t.Fatalf("Ready: %v; want the 410 and the URL without its query", err)
		}
		if !strings.Contains(fw.LastError, "410") {
			t.Fatalf("last error %q", fw.LastError)
		}
		h.advance(time.Hour)
		h.advance(24 * time.Hour)
		h.wantRequests(1)
		h.wantForward("g2", store.ForwardPending, 0, 0)
		h.wantOutcomes(map[string]float64{"paused": 1})
		h.wantGauges(3, (25 * time.Hour).Seconds(), 1)
		if h.f.Ready() == nil {
			t.Fatal("Ready is nil while paused")
		}

		if err := h.st.ResumeForwarding(context.Background(), h.clk.Now()); err != nil {
			t.Fatal(err)
		}
		h.kick()
		h.wantRequests(4)
		for _, id := range []string{"g2", "g3"} {
			h.wantForward(id, store.ForwardDelivered, 1, 200)
		}
		h.wantForward("g1", store.ForwardDelivered, 2, 200)
		if err := h.f.Ready(); err != nil {
			t.Fatalf("Ready after resume: %v", err)
		}
		h.wantOutcomes(map[string]float64{"paused": 1, "delivered": 3})
		h.wantGauges(0, 0, 0)
		h.wantLogs(map[string]int{"error the app answered 410 Gone": 1, "warn forwarding is paused": 1,
			"info forwarding resumed": 1})
	})
}

// TestGoneShowsInReadyAtOnce: Ready names the pause as soon as the 410 is
// recorded, with the clock standing still, even though the loop had just
// looked at the store and found no pause.
func TestGoneShowsInReadyAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(statuses(http.StatusGone))
		h.start(h.options())
		if err := h.f.Ready(); err != nil {
			t.Fatal(err)
		}
		mark := h.mark()
		h.end("n1")
		h.waitFor("the 410", func() bool { return len(h.app.requests()) == 1 })
		h.settle(mark)
		h.wantForward("n1", store.ForwardPaused, 1, 410)
		if err := h.f.Ready(); err == nil || !strings.Contains(err.Error(), "410") {
			t.Fatalf("Ready: %v, want the pause", err)
		}
		h.end("n2") // woken by its end, the loop sends nothing while paused
		h.advance(time.Minute)
		h.wantRequests(1)
	})
}

// TestPauseSeenFromStore: a pause recorded by another process (here, a
// forward claimed and finished paused straight in the store) shows in
// Ready once the idle loop reads it again, and a resume made elsewhere
// clears it.
func TestPauseSeenFromStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.end("x")
		h.start(h.options())
		h.wantForward("x", store.ForwardDelivered, 1, 200)
		if err := h.f.Ready(); err != nil {
			t.Fatal(err)
		}
		// Another replica sends x again in an hour and gets a 410.
		ctx := context.Background()
		later := h.clk.Now().Add(time.Hour)
		if n, err := h.st.RetryForwards(ctx, later, []string{"x"}); err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		cl, err := h.st.ClaimForwards(ctx, later, 1, time.Minute, false)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim: %v, %v", cl, err)
		}
		ok, err := h.st.FinishForward(ctx, cl[0], store.ForwardResult{At: later, Status: 410,
			Err: "gone elsewhere", State: store.ForwardPaused})
		if err != nil || !ok {
			t.Fatalf("finish: %v, %v", ok, err)
		}
		h.advance(pauseReadEvery - backstop)
		if err := h.f.Ready(); err != nil {
			t.Fatalf("Ready: %v; the idle loop read the pause again before pauseReadEvery", err)
		}
		h.advance(backstop)
		if err := h.f.Ready(); err == nil || !strings.Contains(err.Error(), "gone elsewhere") {
			t.Fatalf("Ready: %v; want the pause recorded elsewhere", err)
		}
		if err := h.st.ResumeForwarding(ctx, h.clk.Now()); err != nil {
			t.Fatal(err)
		}
		h.advance(backstop)
		if err := h.f.Ready(); err != nil {
			t.Fatalf("Ready after a resume elsewhere: %v", err)
		}
		h.wantForward("x", store.ForwardDelivered, 2, 200)
		h.wantRequests(2)
	})
}

// TestRetryAfter: a 429's Retry-After longer than the step is waited out,
// capped at the step after.
func TestRetryAfter(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			switch {
			case n <= 2 && got.JobID == "soon":
				w.Header().Set("Retry-After", "180")
				return http.StatusTooManyRequests
			case n <= 2:
				w.Header().Set("Retry-After", "86400")
				return http.StatusTooManyRequests
			}
			return http.StatusOK
		})
		h.end("soon")
		h.end("late")
		t0 := h.clk.Now()
		h.start(h.options())
		h.wantRequests(2)
		h.wantNext("soon", t0.Add(3*time.Minute))
		h.wantNext("late", t0.Add(5*time.Minute)) // the next step caps a day

		h.advance(time.Minute) // the step alone would send both now
		h.wantRequests(2)
		h.advance(2 * time.Minute)
		h.wantForward("soon", store.ForwardDelivered, 2, 200)
		h.wantForward("late", store.ForwardPending, 1, 429)
		h.advance(2 * time.Minute)
		h.wantForward("late", store.ForwardDelivered, 2, 200)
		h.wantRequests(4)
	})
}

// TestFailedThenRetried: past the last step the forward is failed and
// left alone; RetryForwards and Kick deliver it.
func TestFailedThenRetried(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			return http.StatusServiceUnavailable
		})
		h.end("dead")
		opts := h.options()
		opts.Schedule = []time.Duration{time.Minute, 2 * time.Minute}
		h.start(opts)
		h.advance(time.Minute)
		h.advance(2 * time.Minute)
		fw := h.wantForward("dead", store.ForwardFailed, 3, 503)
		if fw.NextAttemptAt != nil || !strings.Contains(fw.LastError, "503") {
			t.Fatalf("failed forward %+v", fw)
		}
		h.advance(24 * time.Hour)
		h.wantRequests(3)
		h.wantOutcomes(map[string]float64{"retry": 2, "failed": 1})
		h.wantGauges(0, 0, 0)

		h.app.setRespond(ok)
		n, err := h.st.RetryForwards(context.Background(), h.clk.Now(), []string{"dead"})
		if err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		h.kick()
		h.wantForward("dead", store.ForwardDelivered, 1, 200)
		h.wantRequests(4)
		h.wantOutcomes(map[string]float64{"retry": 2, "failed": 1, "delivered": 1})
	})
}

// TestOrdered: in ordered mode a failing forward holds every later one, one
// request at a time, and the app sees seq never go back.
func TestOrdered(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			if got.JobID == "o2" && n <= 3 {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		ids := []string{"o1", "o2", "o3", "o4", "o5"}
		for _, id := range ids {
			h.end(id)
		}
		opts := h.options()
		opts.Ordered, opts.Concurrency = true, 4
		h.start(opts)
		h.wantRequests(2) // o1 delivered, o2 failed
		h.advance(30 * time.Second)
		h.wantRequests(2) // o3 waits behind o2
		h.wantForward("o3", store.ForwardPending, 0, 0)
		h.advance(30 * time.Second)
		h.wantRequests(3) // o2 failed again
		h.advance(5 * time.Minute)
		got := h.wantRequests(7)
		var last, lastDelivered int64
		var delivered []string
		for i, r := range got {
			if r.Seq < last {
				t.Fatalf("request %d: seq %d after %d: %v", i+1, r.Seq, last, jobIDs(got))
			}
			if r.status == http.StatusOK {
				if r.Seq <= lastDelivered {
					t.Fatalf("seq %d delivered after %d: %v", r.Seq, lastDelivered, jobIDs(got))
				}
				delivered = append(delivered, r.JobID)
				lastDelivered = r.Seq
			}
			last = r.Seq
		}
		if strings.Join(delivered, ",") != strings.Join(ids, ",") {
			t.Fatalf("delivered %v, want %v", delivered, ids)
		}
		if got := h.app.maxInFlight(); got != 1 {
			t.Fatalf("up to %d requests in flight, want 1", got)
		}
	})
}

// TestConcurrencyLimit: never more than Concurrency attempts at once.
func TestConcurrencyLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		arrived := make(chan string, 10)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			arrived <- got.JobID
			return g.hold(w, r, n, got)
		})
		for i := range 10 {
			h.end("c" + string(rune('a'+i)))
		}
		opts := h.options()
		opts.Concurrency = 3
		opts.Timeout = time.Minute // the app holds them, however slow the machine
		h.newForwarder(opts).Start()
		for range 3 {
			h.receive(arrived, "a request at the app")
		}
		// Asleep with 3 in flight, which the app holds: it sends no more
		// until one ends.
		h.settleWith(0, 3)
		select {
		case id := <-arrived:
			t.Fatalf("a 4th request (%s) with 3 held", id)
		default:
		}
		h.wantRequests(3)
		g.release()
		for i := range 10 {
			id := "c" + string(rune('a'+i))
			h.waitFor(id+" delivered", func() bool { return h.job(id).Forward.State == store.ForwardDelivered })
		}
		h.wantRequests(10)
		if got := h.app.maxInFlight(); got != 3 {
			t.Fatalf("up to %d requests in flight at the app, want 3", got)
		}
	})
}

// TestReadyClaimsBatched: forwards are claimed a batch at a time, up to
// twice Concurrency, and a slot that frees takes the next one claimed
// without a round trip to the store.
func TestReadyClaimsBatched(t *testing.T) {
	h := newHarness(t, backends()[0])
	counted := &claimCounter{Store: h.st}
	for i := range 24 {
		h.end(fmt.Sprintf("b%02d", i))
	}
	opts := h.options()
	opts.Store, opts.Concurrency = counted, 4
	h.start(opts)
	if d := h.app.delivered(); len(d) != 24 {
		t.Fatalf("delivered %d jobs, want 24", len(d))
	}
	// 8 at first, then at least 4 each time no more than 4 are left.
	if got := counted.claimed.Load(); got > 5 {
		t.Fatalf("24 forwards at 4 in flight were claimed in %d round trips, want at most 5", got)
	}
	if got := h.app.maxInFlight(); got > 4 {
		t.Fatalf("up to %d requests in flight, want at most 4", got)
	}
}

// TestReadyClaimTooOldIsNotSent: a forward claimed while every slot was
// busy, and still waiting when its lease could run out during an attempt,
// is not sent on that claim: it is claimed again once the lease has run
// out, so no other process can send it at the same time.
func TestReadyClaimTooOldIsNotSent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			if n == 1 {
				return g.hold(w, r, n, got)
			}
			return http.StatusOK
		})
		h.end("slow")
		h.end("next")
		opts := h.options()
		opts.Concurrency, opts.Timeout = 1, time.Minute
		lease := opts.Timeout + leaseSlack
		h.newForwarder(opts).Start()
		h.waitFor("the first request", func() bool { return len(h.app.requests()) == 1 })
		h.settleWith(0, 1) // "next" is claimed and waits for the slot
		claimed := h.clk.Now()
		h.clk.advance(queuedFor + time.Second)
		mark := h.mark()
		g.release()
		h.settle(mark)
		h.wantForward("slow", store.ForwardDelivered, 1, 200)
		h.wantForward("next", store.ForwardPending, 0, 0)
		h.wantRequests(1)
		h.advance(claimed.Add(lease).Sub(h.clk.Now()))
		h.wantForward("next", store.ForwardDelivered, 1, 200)
		h.wantRequests(2)
	})
}

// TestNewEndWakesForwarder: a job that ends while the forwarder sleeps is
// sent at once, with the clock standing still: the change feed woke it,
// not the backstop.
func TestNewEndWakesForwarder(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.start(h.options())
		for i, id := range []string{"w1", "w2", "w3"} {
			h.end(id)
			h.waitFor("the new end delivered", func() bool { return h.app.delivered()[id] == 1 })
			h.wantRequests(i + 1)
		}
		for _, id := range []string{"w1", "w2", "w3"} {
			h.waitFor("the delivery recorded", func() bool { return h.job(id).Forward.State == store.ForwardDelivered })
		}
	})
}

// TestEndsWhileBusyLeaveFeedAlone: jobs that end while every slot is busy
// do not have the forwarder follow the change feed (which, on SQLite, reads
// every ended job back for it), and are sent once the slots free, with the
// clock standing still.
func TestEndsWhileBusyLeaveFeedAlone(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		h.app.setRespond(g.hold)
		counted := &feedCounter{Store: h.st}
		opts := h.options()
		opts.Store = counted
		h.start(opts)
		for i := range 8 { // 4 in flight, 4 ready: all that is held
			h.end(fmt.Sprintf("f%02d", i))
		}
		h.waitFor("4 requests at the app", func() bool { return len(h.app.requests()) == 4 })
		before := counted.waits.Load()
		const more = 40
		for i := range more {
			h.end(fmt.Sprintf("m%02d", i))
		}
		mark := h.mark()
		g.release()
		h.settle(mark)
		h.waitFor("every forward delivered", func() bool { return len(h.app.delivered()) == 8+more })
		st, err := h.st.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		h.waitFor("the feed followed from the last end", func() bool { return counted.after.Load() == st.LastSeq })
		if got := counted.waits.Load() - before; got > 2 {
			t.Fatalf("the feed was waited on %d times for %d ends while busy, want at most 2", got, more)
		}
		h.wantRequests(8 + more)
	})
}

// feedCounter counts the waits on the change feed, and keeps the seq the
// latest started after.
type feedCounter struct {
	store.Store
	waits, after atomic.Int64
}

func (c *feedCounter) WaitFeed(ctx context.Context, after int64, limit int) ([]store.FeedEvent, int64, error) {
	c.waits.Add(1)
	c.after.Store(after)
	return c.Store.WaitFeed(ctx, after, limit)
}

// TestCloseStopsLoop: Close returns promptly with an attempt in flight,
// which is left for its lease to run out, and the store can then close.
func TestCloseStopsLoop(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
			<-r.Context().Done()
			return 0
		})
		h.end("cut")
		opts := h.options()
		opts.Timeout = time.Minute
		f := h.newForwarder(opts)
		f.Start()
		h.waitFor("the attempt in flight", func() bool { return len(h.app.requests()) == 1 })
		start := time.Now()
		f.Close()
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Close took %s", took)
		}
		h.wantForward("cut", store.ForwardPending, 0, 0)
		if a := h.attempts("cut"); len(a) != 0 {
			t.Fatalf("attempts %+v recorded for a cut attempt", a)
		}
	})
}

// TestConnectionsReused: a backlog goes out over one connection to the app
// per attempt in flight, kept open between attempts, rather than a new
// connection for most forwards (http.DefaultTransport keeps 2 a host).
func TestConnectionsReused(t *testing.T) {
	h := newHarness(t, backends()[0]) // the client's doing, whatever the store
	srv, conns := h.countedApp()
	const n, concurrency = 64, 8
	for i := range n {
		h.end(fmt.Sprintf("k%02d", i))
	}
	opts := h.options()
	opts.URL, opts.Concurrency = srv.URL+"/hooks", concurrency
	h.start(opts)
	if d := h.app.delivered(); len(d) != n {
		t.Fatalf("delivered %d jobs, want %d", len(d), n)
	}
	// Now and then a request starts the moment before the connection it
	// would reuse is back in the pool, and one more is dialed.
	got := conns.opened()
	t.Logf("%d forwards at %d in flight opened %d connections", n, concurrency, got)
	if got > concurrency+concurrency/2 {
		t.Fatalf("%d forwards at %d in flight opened %d connections, want about %d", n, concurrency, got, concurrency)
	}
}

// TestCloseLeavesNothingRunning: Close with an attempt in flight and
// connections idle returns with none of the forwarder's goroutines left,
// and every connection to the app closed.
func TestCloseLeavesNothingRunning(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		srv, conns := h.countedApp()
		for _, id := range []string{"i1", "i2", "i3"} {
			h.end(id)
		}
		opts := h.options()
		opts.URL, opts.Timeout = srv.URL+"/hooks", time.Minute
		h.start(opts)
		h.wantRequests(3)
		h.app.setRespond(newGate(t).hold)
		h.end("cut")
		h.waitFor("the attempt in flight", func() bool { return len(h.app.requests()) == 4 })
		h.f.Close()
		h.waitFor("the forwarder's goroutines to end, and its connections to close", func() bool {
			return conns.open() == 0 && !goroutinesWith("nouvelhook/forward.(*Forwarder)", "net/http.(*persistConn)")
		})
		h.wantForward("cut", store.ForwardPending, 0, 0)
	})
}

// TestRequeuedWhileInFlight: a retry queued while an attempt is in flight
// fences that attempt off: its answer is not recorded, the forward is sent
// again, and both requests carry the same webhook-id for the app to dedupe.
func TestRequeuedWhileInFlight(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		h.app.setRespond(g.hold)
		h.end("twice")
		h.newForwarder(h.options()).Start()
		h.waitFor("the first attempt", func() bool { return len(h.app.requests()) == 1 })
		if n, err := h.st.RetryForwards(context.Background(), h.clk.Now(), []string{"twice"}); err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		h.f.Kick()
		h.waitFor("the second attempt", func() bool { return len(h.app.requests()) == 2 })
		mark := h.mark()
		g.release()
		h.settle(mark) // both attempts over
		h.wantForward("twice", store.ForwardDelivered, 1, 200)
		if a := h.attempts("twice"); len(a) != 1 {
			t.Fatalf("attempts %+v, want the second alone", a)
		}
		got := h.wantRequests(2)
		if id0, id1 := got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"); id0 != id1 || id0 != "job_twice" {
			t.Fatalf("webhook-ids %q and %q, want job_twice twice", id0, id1)
		}
		h.wantOutcomes(map[string]float64{"delivered": 2})
	})
}

// TestIdleMetrics: with forwarding off the same series exist, at 0.
func TestIdleMetrics(t *testing.T) {
	h := &harness{t: t, reg: prometheus.NewRegistry()}
	RegisterIdleMetrics(h.reg)
	h.wantOutcomes(nil)
	h.wantGauges(0, 0, 0)
}

// TestTwoReplicasDeliverOnce: two forwarders on one Postgres, each woken by
// every end, share the queue: every job reaches the app once.
func TestTwoReplicasDeliverOnce(t *testing.T) {
	dbURL := freshSchema(t)
	h := newHarness(t, backend{"postgres", func(t *testing.T, clk *manualClock) store.Store {
		return openPostgres(t, dbURL, clk)
	}})
	other := openPostgres(t, dbURL, h.clk)
	h.start(h.options())
	opts := h.options()
	reg2 := prometheus.NewRegistry()
	opts.Store, opts.Registerer = other, reg2
	f2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f2.Start()
	t.Cleanup(func() { f2.Close() })

	const n = 40
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		if i%2 == 0 {
			h.end(id)
		} else {
			endOn(t, other, h.clk, id)
		}
	}
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		h.waitFor(id+" delivered", func() bool { return h.job(id).Forward.State == store.ForwardDelivered })
	}
	got := h.app.requests()
	seen := map[string]int{}
	for _, r := range got {
		seen[r.JobID]++
	}
	if len(got) != n || len(seen) != n {
		t.Fatalf("the app got %d requests for %d jobs, want %d for %d: %v", len(got), len(seen), n, n, jobIDs(got))
	}
	var split []float64
	for _, reg := range []*prometheus.Registry{h.reg, reg2} {
		c, err := testutil.GatherAndCount(reg, "nouvelhook_forwards_total")
		if err != nil || c != len(outcomes) {
			t.Fatalf("nouvelhook_forwards_total: %d series, %v", c, err)
		}
		fams, _ := reg.Gather()
		for _, fam := range fams {
			for _, m := range fam.GetMetric() {
				if fam.GetName() == "nouvelhook_forwards_total" && m.GetLabel()[0].GetValue() == "delivered" {
					split = append(split, m.GetCounter().GetValue())
				}
			}
		}
	}
	if len(split) != 2 || split[0]+split[1] != n {
		t.Fatalf("delivered by each replica: %v, want %d in all", split, n)
	}
	t.Logf("delivered by each replica: %v", split)
}

// goroutinesWith reports whether a goroutine's stack names any of fns.
func goroutinesWith(fns ...string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range fns {
			if strings.Contains(g, fn) {
				return true
			}
		}
	}
	return false
}

// TestStaleKeptAliveConnectionIsResent: an app that closes a kept-alive
// connection just as a forward goes out on it (as Node does with an idle
// socket after 5 s) costs no attempt: the forward carries Idempotency-Key,
// so the transport sends it again at once on a new connection.
func TestStaleKeptAliveConnectionIsResent(t *testing.T) {
	h := newHarness(t, backends()[0]) // the client's doing, whatever the store
	h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
		if n != 2 {
			return http.StatusOK
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return 0
		}
		conn.Close() // the request was read; no answer comes on this connection
		return 0
	})
	opts := h.options()
	opts.Concurrency = 1
	h.end("first")
	h.start(opts)
	h.wantForward("first", store.ForwardDelivered, 1, 200)
	mark := h.mark()
	h.end("second") // goes out on the connection the first one used
	h.settle(mark)
	h.wantForward("second", store.ForwardDelivered, 1, 200)
	reqs := h.wantRequests(3)
	if got, want := reqs[1].header.Get("Idempotency-Key"), WebhookID("second"); got != want {
		t.Errorf("Idempotency-Key %q, want %q", got, want)
	}
}
