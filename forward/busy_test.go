package forward

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// holdEach has the app hold each request until a send on next answers it
// 200, or g is released; arrived gets each request's job id as it comes.
func holdEach(h *harness, g *gate) (next chan struct{}, arrived chan string) {
	next, arrived = make(chan struct{}), make(chan string, 10)
	h.app.setRespond(func(w http.ResponseWriter, r *http.Request, n int, got received) int {
		arrived <- got.JobID
		select {
		case <-next:
			return http.StatusOK
		case <-g.ch:
			return http.StatusOK
		case <-r.Context().Done():
			return 0
		}
	})
	return next, arrived
}

// TestBusyGivesWay: while Busy holds, one attempt at a time is in flight,
// started at most every busyPace, and forwards keep moving; once it no
// longer holds, the loop returns to Concurrency within busyRecheck; when it
// holds again, attempts in flight above one end without a successor.
func TestBusyGivesWay(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		next, arrived := holdEach(h, g)
		const jobs = 12
		for i := range jobs {
			h.end(fmt.Sprintf("g%02d", i))
		}
		var busy atomic.Bool
		busy.Store(true)
		opts := h.options()
		opts.Concurrency = 3
		opts.Timeout = time.Minute // the app holds them, however slow the machine
		opts.Busy = busy.Load
		f := h.newForwarder(opts)
		noMore := func(when string) {
			t.Helper()
			select {
			case id := <-arrived:
				t.Fatalf("%s: another request (%s) at the app", when, id)
			default:
			}
		}
		inflight := func(want int) {
			t.Helper()
			h.waitFor(fmt.Sprintf("%d attempts in flight", want), func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.inflight == want
			})
		}

		f.Start()
		h.receive(arrived, "the first request")
		h.settleWith(0, 1)
		noMore("busy at the start")
		// The loop looks again after busyRecheck, and still sends one.
		mark := h.mark()
		h.clk.advance(busyRecheck)
		h.settleWith(mark, 1)
		noMore("still busy")

		// Not starved, but paced: an answer lets the next forward go at
		// once when busyPace has passed since the last start (it has: the
		// clock moved busyRecheck), else busyPace after that start.
		next <- struct{}{}
		h.receive(arrived, "request 2 while busy")
		inflight(1)
		noMore("busy, one answered")
		for i := range 2 {
			mark := h.mark()
			next <- struct{}{}
			h.settleWith(mark, 0)
			noMore("busy, answered within busyPace of the last start")
			h.clk.advance(busyPace)
			h.receive(arrived, fmt.Sprintf("request %d while busy, busyPace on", i+3))
			inflight(1)
			noMore("busy, one answered")
		}
		if got := h.app.maxInFlight(); got != 1 {
			t.Fatalf("up to %d requests in flight at the app while busy, want 1", got)
		}
		// The loop may be claiming after those answers: let it sleep.
		mark = h.mark()
		f.Kick()
		h.settleWith(mark, 1)
		noMore("busy, asleep")

		// No longer busy: within busyRecheck, Concurrency again.
		notBusy := func(when string) {
			t.Helper()
			busy.Store(false)
			mark := h.mark()
			h.clk.advance(busyRecheck)
			h.receive(arrived, "a 2nd request in flight "+when)
			h.receive(arrived, "a 3rd request in flight "+when)
			h.settleWith(mark, 3)
			noMore("3 in flight " + when)
		}
		notBusy("after the first busy spell")

		// Busy again: the attempts in flight end, and only the last one
		// to end takes a successor. The first slot to end wakes the loop,
		// which from then on looks at Busy every busyRecheck.
		busy.Store(true)
		mark = h.mark()
		next <- struct{}{}
		inflight(2)
		h.settleWith(mark, 2)
		next <- struct{}{}
		inflight(1)
		noMore("busy again, two answered")
		mark = h.mark()
		next <- struct{}{}
		h.receive(arrived, "the next request once one is left")
		h.settleWith(mark, 1)
		noMore("busy again, one in flight")

		notBusy("after the second busy spell")

		// Busy, the rest go one at a time to the end, as the clock moves.
		busy.Store(true)
		g.release()
		h.waitFor("every forward delivered", func() bool {
			h.clk.advance(busyPace)
			for i := range jobs {
				if h.job(fmt.Sprintf("g%02d", i)).Forward.State != store.ForwardDelivered {
					return false
				}
			}
			return true
		})
		for _, n := range h.app.delivered() {
			if n != 1 {
				t.Fatalf("delivered %v, want each job once", h.app.delivered())
			}
		}
		if got := h.app.maxInFlight(); got != 3 {
			t.Fatalf("up to %d requests in flight at the app, want 3", got)
		}
	})
}

// failingClaims fails every claim once fail is set.
type failingClaims struct {
	store.Store
	fail atomic.Bool
}

func (s *failingClaims) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	if s.fail.Load() {
		return nil, errors.New("claims fail")
	}
	return s.Store.ClaimForwards(ctx, now, n, lease, ordered)
}

// TestBusyPaceAfterAFailedClaim: while busy, a ready forward that the pace
// held back starts once the pace allows even when the loop's claim of more
// fails, and the loop sleeps rather than spinning on the failing store.
func TestBusyPaceAfterAFailedClaim(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b)
		g := newGate(t)
		next, arrived := holdEach(h, g)
		for i := range 4 {
			h.end(fmt.Sprintf("p%02d", i))
		}
		opts := h.options()
		opts.Concurrency = 1 // holds 2, and claims more with 1 or none held
		opts.Timeout = time.Minute
		opts.Busy = func() bool { return true }
		claims := &failingClaims{Store: opts.Store}
		opts.Store = claims
		f := h.newForwarder(opts)
		f.Start()
		first := h.receive(arrived, "the first request")
		h.settleWith(0, 1)
		// The answer comes within busyPace of the start: the other one
		// claimed waits for the pace, and the loop's claim of more fails.
		claims.fail.Store(true)
		mark := h.mark()
		next <- struct{}{}
		h.settleWith(mark, 0)
		noMore := func() {
			t.Helper()
			select {
			case id := <-arrived:
				t.Fatalf("another request (%s) before busyPace", id)
			default:
			}
		}
		noMore()
		mark = h.mark()
		h.clk.advance(busyPace)
		if second := h.receive(arrived, "the other forward claimed, though claims fail"); second == first {
			t.Fatalf("%s sent twice", first)
		}
		h.settleWith(mark, 1)
	})
}
