// Package forward sends every job that ends to the app: it claims due
// forwards from the store's queue, POSTs each job's end, signed, to
// NOUVELHOOK_FORWARD_URL, retries on the schedule, and pauses all
// forwarding when the app answers 410 Gone. It is the outbound peer of
// package reconcile and depends only on store.
package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

const (
	// backstop is the longest the loop sleeps: retries and resumes made on
	// other replicas wake no one here.
	backstop = 2 * time.Second
	// minWait keeps a forward that is due but could not be claimed (a race
	// with another replica) from spinning the loop.
	minWait = 50 * time.Millisecond
	// leaseSlack is how much longer than the timeout a claim is held, so
	// that an attempt still running is never claimed again elsewhere.
	leaseSlack = 30 * time.Second
	// storeTimeout bounds one store call of the loop, and recording a
	// result after shutdown began.
	storeTimeout = 10 * time.Second
	// drainLimit is how much of an answer's body is read, so that the
	// connection can be reused; the body itself means nothing.
	drainLimit = 64 << 10
	// errorLogEvery spaces out the loop's logs of a failing store.
	errorLogEvery = time.Minute
	// queuedFor is the longest a claimed forward may wait in the ready
	// queue before it is sent: its lease (timeout + leaseSlack) must still
	// cover a whole attempt. One that waited longer is left to its lease
	// and claimed again once that runs out.
	queuedFor = leaseSlack / 2
	// pauseReadEvery is how often an idle loop reads the pause from the
	// store, to learn of one another replica met: ForwardStats counts the
	// whole queue on Postgres (120 to 200 ms with a million forwards), too
	// dear for every backstop. A Kick or a 410 here reads it at once.
	pauseReadEvery = 30 * time.Second
	// busyRecheck is the longest the loop sleeps while Options.Busy held
	// at its last look, so that it returns to Concurrency soon after the
	// webhooks' burst ends.
	busyRecheck = 100 * time.Millisecond
	// busyPace spaces the starts of attempts while Options.Busy holds: at
	// most one every busyPace, one at a time. Each forward costs the
	// service about as much as three webhooks (its claim and result in the
	// store's single writer, the request, the body and its signatures), and
	// during a burst that saturates the service the forwarder cannot keep
	// up anyway, so what it sends then is taken from the webhooks while
	// barely shortening the backlog that drains, at Concurrency, once the
	// burst ends. One every busyPace (20 a second) keeps forwards moving
	// in a burst that does not end.
	busyPace = 50 * time.Millisecond
)

// Clock is the forwarder's time source; it has the shape of
// reconcile.Clock, so one clock serves both. Tests inject a simulated one.
type Clock interface {
	Now() time.Time
	// After sends once d has passed.
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Forwarder.
type Options struct {
	// Store holds the forwarding queue.
	Store store.Store
	// URL is where forwards are POSTed (NOUVELHOOK_FORWARD_URL): an
	// absolute http or https URL.
	URL string
	// NouvelSecret signs X-Nouvel-Signature (the first
	// NOUVEL_WEBHOOK_SECRET); "" sends no such header.
	NouvelSecret string
	// Key signs the Standard Webhooks headers (NOUVELHOOK_FORWARD_SECRET,
	// decoded); nil sends none.
	Key []byte
	// Schedule is the wait before each retry; after the last step fails
	// the forward is failed. Every step must be positive.
	Schedule []time.Duration
	// Timeout bounds one attempt; it must be positive.
	Timeout time.Duration
	// Concurrency is how many attempts may be in flight at once, at least
	// 1; Ordered sends one at a time whatever it says.
	Concurrency int
	// Ordered delivers strictly in seq order, one at a time: a forward
	// that keeps failing holds all after it.
	Ordered bool
	// Clock defaults to the wall clock. It also dates webhook-timestamp.
	Clock Clock
	// Rand draws the retries' jitter; nil uses math/rand/v2's global
	// source. It is used under a lock.
	Rand *rand.Rand
	// Logger is the root logger; the forwarder adds its component.
	Logger zerolog.Logger
	// Registerer, when set, receives the forwarder's metrics.
	Registerer prometheus.Registerer
	// Client sends the forwards, with its transport as it is; nil uses a
	// client of the forwarder's own, which keeps a connection to the app
	// open for each of Concurrency and closes them at Close. Either way
	// redirects are not followed.
	Client *http.Client
	// Version goes in the User-Agent, nouvelhook/<Version>; "" is "dev".
	Version string
	// Busy, when set, says the service has more urgent work than
	// forwarding (webhooks to answer): while it holds, one attempt at a
	// time is in flight, and attempts start at most every 50 ms of Clock,
	// never none, so that forwards still move. The loop asks again at
	// least every 100 ms, and each attempt at its end, and returns to
	// Concurrency once it no longer holds. It is called often, so it must
	// be cheap; nil is never busy.
	Busy func() bool
}

// Forwarder sends ended jobs to the app. Start it with Start and stop it
// with Close.
type Forwarder struct {
	opts     Options
	clock    Clock
	client   *http.Client
	own      *http.Transport // the client's transport when the forwarder made it
	sign     signer
	shownURL string // without user info or query
	lease    time.Duration
	log      zerolog.Logger
	metrics  metrics
	wake     chan struct{}
	// arm hands the feed watcher the seq after which an end must wake the
	// loop: the loop arms it each time it goes to sleep (see watchEnds).
	arm chan int64
	// seen is the change feed's last seq as the loop last read it, before
	// its latest claim: every job that ended up to it was there for that
	// claim to see. Only the loop uses it.
	seen int64

	// hold is how many forwards may be claimed at once, in flight or
	// ready: twice Concurrency, so that a slot that frees takes the next
	// forward at once and claims are made a batch at a time; Concurrency
	// (one) in ordered mode, where the next is not due until this one ends.
	// refill is how few held forwards make the loop claim more.
	hold, refill int

	mu       sync.Mutex
	inflight int
	// ready are forwards claimed and not yet sent, lowest seq first.
	ready []queued
	// gone counts the 410s recorded here: a claim made while one was
	// answered is dropped rather than sent.
	gone int
	// pause is the pause reason as the loop last saw it in the store, ""
	// when not paused. Only the loop changes it, so its observations,
	// made one after another, never undo a later one.
	pause      string
	checkPause bool      // read the pause at the next step: a Kick or a 410
	lastCheck  time.Time // when the pause was last read from the store
	lastErrLog time.Time
	// failing is set from a failed attempt to the next delivery, so that a
	// backlog failing against an app that is down logs once, not once a
	// forward.
	failing bool
	// paceUntil is when the next attempt may start while Busy holds: an
	// attempt started while busy sets it busyPace on.
	paceUntil time.Time

	busy   func() bool // Options.Busy, never nil
	randMu sync.Mutex

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// onWait, when set (by tests), is called each time the loop goes to
	// sleep with no wake-up pending, with the attempts in flight.
	onWait func(inflight int)
}

// New checks opts and returns a Forwarder; it sends nothing until Start.
// An error names the option that is wrong.
func New(opts Options) (*Forwarder, error) {
	if opts.Store == nil {
		return nil, errors.New("forward: no store")
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		// url's error quotes the whole URL, secrets and all.
		return nil, errors.New("forward: the URL is unreadable, not an absolute http or https URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("forward: URL %q is not an absolute http or https URL", showURL(u))
	}
	if len(opts.Schedule) == 0 {
		return nil, errors.New("forward: the schedule has no step")
	}
	for i, d := range opts.Schedule {
		if d <= 0 {
			return nil, fmt.Errorf("forward: schedule step %d is %s, not positive", i+1, d)
		}
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("forward: timeout is %s, not positive", opts.Timeout)
	}
	if opts.Concurrency < 1 {
		return nil, fmt.Errorf("forward: concurrency is %d, below 1", opts.Concurrency)
	}
	if opts.Ordered {
		opts.Concurrency = 1
	}
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	f := &Forwarder{
		opts:     opts,
		clock:    opts.Clock,
		sign:     signer{nouvelSecret: []byte(opts.NouvelSecret), key: opts.Key},
		shownURL: showURL(u),
		lease:    opts.Timeout + leaseSlack,
		log:      opts.Logger.With().Str("component", "forwarder").Logger(),
		wake:     make(chan struct{}, 1),
		arm:      make(chan int64, 1),
		hold:     2 * opts.Concurrency,
		refill:   opts.Concurrency,
	}
	if opts.Ordered {
		f.hold, f.refill = 1, 0
	}
	if opts.Busy == nil {
		f.busy = func() bool { return false }
	} else {
		f.busy = opts.Busy
	}
	f.client, f.own = newClient(opts.Client, opts.Concurrency)
	f.metrics = newMetrics(opts.Registerer, opts.Store.ForwardStats, f.clock.Now)
	return f, nil
}

// newClient returns a copy of c that hands a redirect back as the answer:
// a forward that is redirected is not delivered, and following it would
// send the signed body somewhere not configured. With c nil it is a client
// of its own, returned with its transport, which keeps up to concurrency
// connections to the app idle between attempts: http.DefaultTransport
// keeps 2 a host, so above 2 in flight each attempt would close its
// connection and the next would dial again.
// idleConnTimeout is how long a connection to the app is kept idle.
const idleConnTimeout = 4 * time.Second

func newClient(c *http.Client, concurrency int) (*http.Client, *http.Transport) {
	var nc http.Client
	var own *http.Transport
	if c != nil {
		nc = *c
	} else {
		own = http.DefaultTransport.(*http.Transport).Clone()
		own.MaxIdleConnsPerHost = concurrency
		own.MaxIdleConns = max(own.MaxIdleConns, concurrency)
		// Under Node's default keep-alive timeout of 5 s, so that the
		// forwarder, not the app, usually closes an idle connection.
		own.IdleConnTimeout = idleConnTimeout
		nc.Transport = own
	}
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &nc, own
}

// Start runs the forwarding loop in the background until Close.
func (f *Forwarder) Start() {
	f.log.Info().Str("url", f.shownURL).Int("concurrency", f.opts.Concurrency).Bool("ordered", f.opts.Ordered).
		Bool("standard_webhooks", f.sign.key != nil).Msg("forwarding ended jobs to the app")
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		// The feed's last seq is read before the loop's first look, so
		// that a job that ends in between is not missed, and the loop is
		// not woken for nothing at the start.
		f.seen = f.feedStart(ctx)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.loop(ctx)
		}()
		f.watchFeed(ctx)
	}()
}

// Close stops the loop and waits for it. Attempts in flight are cut; those
// that had an answer record it, the others, and forwards claimed but not
// yet sent, stay leased until their lease runs out and are sent again. The
// forwarder's own connections to the app are closed.
func (f *Forwarder) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	if f.own != nil {
		f.own.CloseIdleConnections()
	}
	return nil
}

// Kick wakes the loop now and has it read the pause from the store: the
// admin API calls it after a retry, a replay or a resume.
func (f *Forwarder) Kick() {
	f.mu.Lock()
	f.checkPause = true
	f.mu.Unlock()
	f.signal()
}

// Ready is nil unless forwarding is paused, in which case it says why and
// how to resume. A pause met by another replica shows here within
// pauseReadEvery (30 s); one met here, or ended by a resume and Kick here,
// shows at once.
func (f *Forwarder) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pause == "" {
		return nil
	}
	return fmt.Errorf("forwarding is paused: %s; resume with POST /v1/forwards/resume or nouvelhook forward retry", f.pause)
}

// Status is the forwarding queue as /v1/stats shows it; its errors are the
// store's.
func (f *Forwarder) Status(ctx context.Context) (store.ForwardStats, error) {
	return f.opts.Store.ForwardStats(ctx)
}

func (f *Forwarder) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Forwarder) loop(ctx context.Context) {
	for ctx.Err() == nil {
		wait := f.step(ctx)
		if wait <= 0 {
			continue
		}
		timer := f.clock.After(wait)
		if f.onWait != nil {
			f.mu.Lock()
			n, pending := f.inflight, len(f.wake) > 0
			f.mu.Unlock()
			if !pending {
				f.onWait(n)
			}
		}
		select {
		case <-timer:
		case <-f.wake:
		case <-ctx.Done():
		}
	}
}

// concurrency is how many attempts may be in flight now: one while the
// service is busy. Claims are still made a batch at a time then (hold and
// refill do not change), so that each forward sent while busy does not
// cost a claim of its own in the store's writer as well.
func (f *Forwarder) concurrency(busy bool) int {
	if busy {
		return 1
	}
	return f.opts.Concurrency
}

// step looks at Busy, then sleeps at most busyRecheck when it holds, and
// no longer than until the pace lets the next ready forward start.
func (f *Forwarder) step(ctx context.Context) time.Duration {
	busy := f.busy()
	wait := f.claimAndStart(ctx, busy)
	if !busy {
		return wait
	}
	wait = min(wait, busyRecheck)
	f.mu.Lock()
	defer f.mu.Unlock()
	// A ready forward left in a free slot is held back by the pace, which
	// then ends after now (claimAndStart may also have returned before
	// starting any, on a store error).
	f.startLocked(ctx, busy)
	if len(f.ready) > 0 && f.inflight < f.concurrency(busy) {
		wait = min(wait, f.paceUntil.Sub(f.clock.Now()))
	}
	return wait
}

// claimAndStart claims what is due, a batch at a time, starts attempts in
// the free slots, and returns how long to sleep before looking again.
func (f *Forwarder) claimAndStart(ctx context.Context, busy bool) time.Duration {
	now := f.clock.Now()
	f.mu.Lock()
	n, gone := f.hold-f.inflight-len(f.ready), f.gone
	f.mu.Unlock()
	if f.hold-n > f.refill {
		// Slots left by Busy take the ready forwards once it no longer
		// holds; a slot that frees with few ready wakes the loop.
		f.start(ctx, busy)
		return backstop
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	claims, err := f.opts.Store.ClaimForwards(cctx, now, n, f.lease, f.opts.Ordered)
	if err != nil {
		f.storeError(ctx, now, err, "claim forwards")
		return backstop
	}
	f.mu.Lock()
	if f.gone != gone {
		// The app answered 410 while these were claimed: they are not
		// sent, and are claimed again after their lease once resumed.
		claims = nil
	}
	for _, c := range claims {
		f.ready = append(f.ready, queued{claim: c, at: now})
	}
	f.startLocked(ctx, busy)
	f.mu.Unlock()
	if len(claims) > 0 {
		f.notPaused() // nothing is claimed while paused
		if len(claims) == n {
			return 0 // more may be due
		}
	}
	next, ok, err := f.opts.Store.NextForwardAt(cctx)
	if err != nil {
		f.storeError(ctx, now, err, "read the forwarding queue")
		return backstop
	}
	if !ok {
		// Nothing pending, or paused: only the store can tell which.
		f.readPause(cctx, now)
		f.mu.Lock()
		paused := f.pause != ""
		f.mu.Unlock()
		if paused {
			return backstop // a new end is not sent until a resume, which Kicks
		}
		return f.watchEnds(cctx, now, len(claims) > 0, backstop)
	}
	f.notPaused() // nor is a forward pending while paused
	wait := next.Sub(now)
	switch {
	case f.opts.Ordered:
		// A forward is pending, and it holds every new end behind it.
		if wait <= 0 {
			return backstop // due, but the one before it is in flight
		}
		return min(max(wait, minWait), backstop)
	case wait <= 0:
		// Due but not claimed: taken by another replica a moment ago.
		wait = minWait
	}
	return f.watchEnds(cctx, now, len(claims) > 0, min(max(wait, minWait), backstop))
}

// start starts attempts for ready forwards in the free slots, up to
// concurrency(busy) in flight, and while busy only once the pace allows.
func (f *Forwarder) start(ctx context.Context, busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startLocked(ctx, busy)
}

// startLocked is start with f.mu held.
func (f *Forwarder) startLocked(ctx context.Context, busy bool) {
	for f.inflight < f.concurrency(busy) && len(f.ready) > 0 && f.pacedLocked(busy) {
		f.inflight++
		q := f.ready[0]
		f.ready = f.ready[1:]
		f.wg.Add(1)
		go f.work(ctx, q)
	}
}

// pacedLocked reports whether an attempt may start now, with f.mu held:
// always when not busy; while busy, once busyPace has passed since the
// last start while busy, which it then counts from now.
func (f *Forwarder) pacedLocked(busy bool) bool {
	if !busy {
		return true
	}
	now := f.clock.Now()
	if now.Before(f.paceUntil) {
		return false
	}
	f.paceUntil = now.Add(busyPace)
	return true
}

// watchEnds is how the loop, about to sleep for wait, learns of jobs that
// end meanwhile, without following the change feed while they stream in.
// It reads the feed's last seq: when jobs ended since before this step's
// claim, their forwards are due already, and the loop looks again at once
// (after minWait when this claim found nothing, so that forwards it cannot
// take do not spin it). Otherwise it arms the feed watcher with that seq,
// so that the next end wakes the loop. Under a steady stream of ends the
// loop thus claims them as they come and the watcher, and the change feed's
// reads of every ended job for it, stay idle.
func (f *Forwarder) watchEnds(ctx context.Context, now time.Time, claimed bool, wait time.Duration) time.Duration {
	st, err := f.opts.Store.Stats(ctx)
	if err != nil {
		f.storeError(ctx, now, err, "read the change feed's last seq")
		return backstop
	}
	ended := st.LastSeq > f.seen
	f.seen = st.LastSeq
	if ended && claimed {
		return 0
	}
	select { // replace an arming the watcher has not taken yet
	case <-f.arm:
	default:
	}
	f.arm <- st.LastSeq
	if ended {
		return minWait
	}
	return wait
}

// readPause reads the pause from the store, when asked to or at most once
// every pauseReadEvery.
func (f *Forwarder) readPause(ctx context.Context, now time.Time) {
	f.mu.Lock()
	due := f.checkPause || f.lastCheck.IsZero() || now.Sub(f.lastCheck) >= pauseReadEvery || now.Before(f.lastCheck)
	f.checkPause = false
	f.mu.Unlock()
	if !due {
		return
	}
	st, err := f.opts.Store.ForwardStats(ctx)
	if err != nil {
		f.storeError(ctx, now, err, "read the forwarding pause")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCheck = now
	switch {
	case st.Paused && f.pause != st.PauseReason:
		f.pause = st.PauseReason
		f.log.Warn().Str("reason", st.PauseReason).Msg("forwarding is paused")
	case !st.Paused && f.pause != "":
		f.pause = ""
		f.log.Info().Msg("forwarding resumed")
	}
}

// notPaused clears the pause as last seen, after the store showed it is
// not paused.
func (f *Forwarder) notPaused() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pause != "" {
		f.pause = ""
		f.log.Info().Msg("forwarding resumed")
	}
}

func (f *Forwarder) storeError(ctx context.Context, now time.Time, err error, what string) {
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	quiet := now.Sub(f.lastErrLog) < errorLogEvery && !now.Before(f.lastErrLog)
	if !quiet {
		f.lastErrLog = now
	}
	f.mu.Unlock()
	if !quiet {
		f.log.Error().Err(err).Msg(what)
	}
}

// queued is a claimed forward waiting for a free slot.
type queued struct {
	claim store.ForwardClaim
	at    time.Time // when it was claimed
}

// work sends q, then the next ready forward, and so on, in one of the
// Concurrency slots; when none is ready, or Busy holds and another slot is
// in flight, it frees the slot. The loop is woken when few are held, to
// claim more.
func (f *Forwarder) work(ctx context.Context, q queued) {
	defer f.wg.Done()
	for {
		if f.clock.Now().Sub(q.at) <= queuedFor {
			f.attempt(ctx, q.claim)
		} else {
			f.log.Debug().Str("job_id", q.claim.Job.JobID).Int64("seq", q.claim.Job.Seq).
				Msg("forward waited too long for a free slot; it is claimed again once its lease runs out")
		}
		busy := f.busy()
		f.mu.Lock()
		more := len(f.ready) > 0 && ctx.Err() == nil
		// Giving way: the loop is woken too, so that it looks at Busy
		// every busyRecheck from now on, starts the next when the pace
		// allows, and fills this slot again soon after Busy ends.
		yield := more && (f.inflight > f.concurrency(busy) || !f.pacedLocked(busy))
		more = more && !yield
		if more {
			q = f.ready[0]
			f.ready = f.ready[1:]
		} else {
			f.inflight--
		}
		if yield || f.inflight+len(f.ready) <= f.refill {
			f.signal() // under the lock, so no one sees the slot free and no wake-up
		}
		f.mu.Unlock()
		if !more {
			return
		}
	}
}

// attempt sends one forward and records what came of it.
func (f *Forwarder) attempt(ctx context.Context, c store.ForwardClaim) {
	start := f.clock.Now()
	b, err := Body(c.Job)
	if err != nil {
		// A claimed job has ended, so this is a broken row: failing it
		// shows it in the queue instead of retrying it forever.
		f.finish(ctx, c, store.ForwardResult{At: start, Err: err.Error(), State: store.ForwardFailed})
		return
	}
	a := f.send(ctx, c.Job.JobID, b, start)
	if a.err != nil && ctx.Err() != nil {
		return // cut by Close: the lease runs out and it is sent again
	}
	at := f.clock.Now()
	r := f.judge(a, c.Attempt, at, f.jitter())
	r.Took = at.Sub(start)
	f.metrics.duration.Observe(r.Took.Seconds())
	f.metrics.outcomes.WithLabelValues(outcome(r.State)).Inc()
	f.finish(ctx, c, r)
}

// send POSTs body to the app, signed as sent at now.
func (f *Forwarder) send(ctx context.Context, jobID string, body []byte, now time.Time) answer {
	actx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, f.opts.URL, bytes.NewReader(body))
	if err != nil {
		return answer{err: transportError(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nouvelhook/"+f.opts.Version)
	// The forward is idempotent by its webhook id, and saying so lets the
	// transport send it again at once on a fresh connection when the app
	// closed a kept-alive one just as the request went out (Node closes
	// idle sockets after 5 s), instead of the attempt failing for nothing.
	req.Header.Set("Idempotency-Key", WebhookID(jobID))
	f.sign.sign(req.Header, jobID, body, now)
	resp, err := f.client.Do(req)
	if err != nil {
		return answer{err: transportError(err), timedOut: ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded)}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	return answer{status: resp.StatusCode, statusText: http.StatusText(resp.StatusCode),
		retryAfter: resp.Header.Get("Retry-After")}
}

// finish records r, even once shutdown has begun: the app has answered.
func (f *Forwarder) finish(ctx context.Context, c store.ForwardClaim, r store.ForwardResult) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	log := f.log.With().Str("job_id", c.Job.JobID).Int64("seq", c.Job.Seq).Int("attempt", c.Attempt).Logger()
	ok, err := f.opts.Store.FinishForward(fctx, c, r)
	switch {
	case err != nil:
		log.Error().Err(err).Msg("record forward attempt; it is sent again once its lease runs out")
		return
	case !ok:
		log.Info().Msg("forward was queued again while this attempt ran; its result is not recorded")
		return
	}
	f.mu.Lock()
	wasFailing := f.failing
	f.failing = r.State != store.ForwardDelivered
	f.mu.Unlock()
	switch r.State {
	case store.ForwardDelivered:
		if wasFailing {
			log.Info().Int("status", r.Status).Msg("the app takes forwards again")
		} else {
			log.Debug().Int("status", r.Status).Msg("forward delivered")
		}
	case store.ForwardPending:
		ev := log.Warn()
		if wasFailing {
			ev = log.Debug()
		}
		ev.Int("status", r.Status).Str("error", r.Err).Time("next_attempt_at", r.Next).
			Msg("forward failed; retrying on the schedule (further failures log at debug until one is delivered)")
	case store.ForwardFailed:
		log.Error().Int("status", r.Status).Str("error", r.Err).Msg("forward failed on the schedule's last step; retry it with nouvelhook forward retry")
	case store.ForwardPaused:
		f.mu.Lock()
		f.checkPause = true // the loop's next step shows it in Ready
		// Nothing more is sent: the claims ready are left to their lease.
		f.ready = nil
		f.gone++
		f.mu.Unlock()
		log.Error().Str("url", f.shownURL).Msg("the app answered 410 Gone: forwarding pauses until resumed")
	}
}

// jitter is a uniform draw in [0, 1).
func (f *Forwarder) jitter() float64 {
	if f.opts.Rand == nil {
		return rand.Float64()
	}
	f.randMu.Lock()
	defer f.randMu.Unlock()
	return f.opts.Rand.Float64()
}

// feedStart is the last seq of the change feed, where the loop starts;
// -1 when the store cannot say yet.
func (f *Forwarder) feedStart(ctx context.Context) int64 {
	st, err := f.opts.Store.Stats(ctx)
	if err != nil {
		f.storeError(ctx, f.clock.Now(), err, "read the change feed's last seq")
		return -1
	}
	return st.LastSeq
}

// watchFeed wakes the loop when a job ends after the seq the loop armed it
// with (see watchEnds), so that a new forward goes out at once rather than
// at the next backstop. It waits on the feed once per arming, and only
// while the loop sleeps.
func (f *Forwarder) watchFeed(ctx context.Context) {
	for {
		var after int64
		select {
		case after = <-f.arm:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			_, last, err := f.opts.Store.WaitFeed(ctx, max(after, 0), 1)
			if err == nil {
				if last > after {
					f.signal()
				}
				break
			}
			if ctx.Err() == nil {
				f.storeError(ctx, f.clock.Now(), err, "follow the change feed")
				select {
				case <-f.clock.After(backstop):
				case <-ctx.Done():
				}
			}
		}
	}
}
