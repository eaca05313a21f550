// Package reconcile polls Nouvel for jobs the webhooks missed, within a
// request budget, and submits generate requests through the service.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/nouvelhook/nouvelhook/store"
)

const (
	// notFoundLimit 404 answers in a row end a job as not_found.
	notFoundLimit = 3
	// maxBackoff caps the wait after server and transport failures.
	maxBackoff = 5 * time.Minute
	// sweepEvery is how often expiry and missed-webhook checks run.
	sweepEvery = 5 * time.Second
	// lowRemaining is the X-RateLimit-Remaining at or under which polling
	// pauses until the window resets, leaving the rest to other clients of
	// the key.
	lowRemaining = 5
	// defaultRetryAfter is the wait after a 429 that names none.
	defaultRetryAfter = 60 * time.Second
	// pollTimeout bounds one poll.
	pollTimeout = 20 * time.Second
	// defaultLeaderRetry is how often a replica that does not poll tries
	// to take over; with a lock freed at once when the poller dies, it is
	// what bounds a failover.
	defaultLeaderRetry = 5 * time.Second
)

// Clock is the reconciler's time source. Tests inject a simulated one so
// that minutes of schedule run in milliseconds.
type Clock interface {
	Now() time.Time
	// After sends once d has passed.
	After(d time.Duration) <-chan time.Time
}

// WallClock is the Clock of a running service: the system's time.
type WallClock struct{}

// Now is time.Now.
func (WallClock) Now() time.Time { return time.Now() }

// After is time.After.
func (WallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Reconciler.
type Options struct {
	// Store holds the jobs to poll and their schedule.
	Store store.Store
	// Client calls Nouvel with the API key.
	Client *Client
	// Clock defaults to the wall clock.
	Clock Clock
	// Budget is the most Nouvel requests a minute polling may spend.
	Budget int
	// Interval is the first gap between polls of a running job; later gaps
	// are 1.5× and then 2× it.
	Interval time.Duration
	// TTL ends as expired a job that has not ended this long after it was
	// tracked.
	TTL time.Duration
	// MissedGrace is how long after a poll sees a job end its webhook may
	// still come before it counts as missed.
	MissedGrace time.Duration
	// WebhookURL is what Submit sets as webhookUrl; "" submits without one
	// (poll-only), and then no job is ever flagged webhookMissed.
	WebhookURL string
	// Logger is the root logger; the reconciler adds its component.
	Logger zerolog.Logger
	// Registerer, when set, receives the reconciler's metrics.
	Registerer prometheus.Registerer
	// LeaderRetry is how often, when Store is a store.Leadership that
	// another process leads, this one tries to take over; 0 is 5 s.
	LeaderRetry time.Duration
}

// Reconciler polls every job in the log that is not terminal. Start it with
// Start and stop it with Close.
type Reconciler struct {
	opts    Options
	clock   Clock
	limiter *rate.Limiter
	log     zerolog.Logger
	wake    chan struct{}
	metrics reconcileMetrics

	mu          sync.Mutex
	lockedOut   error
	pausedUntil time.Time
	recent      []time.Time // request times within the last minute
	lastSweep   time.Time
	leading     bool

	// lease is held while this process polls; only the loop touches it.
	lease    store.Lease
	leadFail bool // the last try to lead failed, already logged

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// submits counts Submit calls in flight, so Close can wait for a job
	// Nouvel has made to be tracked; closing refuses new ones.
	submitMu sync.Mutex
	closing  bool
	submits  sync.WaitGroup
}

// New returns a Reconciler; it polls nothing until Start.
func New(opts Options) *Reconciler {
	if opts.Clock == nil {
		opts.Clock = WallClock{}
	}
	if opts.LeaderRetry <= 0 {
		opts.LeaderRetry = defaultLeaderRetry
	}
	r := &Reconciler{
		opts:  opts,
		clock: opts.Clock,
		// A burst of one keeps any minute-long window within the budget.
		limiter: rate.NewLimiter(rate.Every(spacing(opts.Budget)), 1),
		log:     opts.Logger.With().Str("component", "reconciler").Logger(),
		wake:    make(chan struct{}, 1),
	}
	r.metrics = newReconcileMetrics(opts.Registerer, r.budgetUsed, r.isLeading, opts.Budget)
	return r
}

// Start runs the polling loop in the background until Close.
func (r *Reconciler) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.loop(ctx)
	}()
}

// Close stops the loop, waits for a poll in progress to be recorded, and
// waits for submits in flight to track their jobs.
func (r *Reconciler) Close() error {
	if r.cancel != nil {
		r.cancel()
	}
	r.submitMu.Lock()
	r.closing = true
	r.submitMu.Unlock()
	r.submits.Wait()
	r.wg.Wait()
	return nil
}

// Track adds a job to the log with its first poll one interval away, as
// Nouvel advises for a job just submitted, and has the loop look at the
// schedule. Errors are store.Track's.
func (r *Reconciler) Track(ctx context.Context, jobID string) (store.Job, bool, error) {
	j, created, err := r.opts.Store.Track(ctx, jobID, r.clock.Now().Add(r.opts.Interval))
	if created {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return j, created, err
}

// Ready is nil unless Nouvel refused the API key, in which case it says so.
func (r *Reconciler) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lockedOut
}

func (r *Reconciler) loop(ctx context.Context) {
	defer r.resign()
	for ctx.Err() == nil {
		wait := r.lead(ctx)
		if wait == 0 {
			wait = r.step(ctx)
		}
		if wait <= 0 {
			continue
		}
		var lost <-chan struct{} // nil, which never fires, while not leading
		if r.lease != nil {
			lost = r.lease.Lost()
		}
		select {
		case <-r.clock.After(wait):
		case <-r.wake:
		case <-lost:
		case <-ctx.Done():
		}
	}
}

// lead returns 0 while this process may poll, and otherwise how long to
// wait before trying again to. A store that is no store.Leadership is
// one process's alone. On taking over, the limiter is seeded so that the
// first request keeps a budget's spacing after the last one any leader
// noted, but waits no more than one spacing from now: the last leader
// noted every request before losing the lock, so before now, and a clock
// of its that ran ahead must not hold polling off longer.
func (r *Reconciler) lead(ctx context.Context) time.Duration {
	if r.lease != nil {
		select {
		case <-r.lease.Lost():
			r.log.Warn().Msg("lost the poller lead; polling stops here until this replica leads again")
			r.resign()
		default:
			return 0
		}
	}
	ld, ok := r.opts.Store.(store.Leadership)
	if !ok {
		r.setLeading(true)
		return 0
	}
	// Bounded, so that a pool with no free connection delays a try, not
	// the loop.
	actx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	lease, ok, err := ld.AcquireLeadership(actx)
	if err == nil && ok {
		var last time.Time
		if last, err = lease.LastRequest(actx); err != nil {
			lease.Release()
		} else {
			r.takeOver(lease, last)
			return 0
		}
	}
	switch {
	case ctx.Err() != nil:
	case err != nil && !r.leadFail:
		r.leadFail = true
		r.log.Error().Err(err).Msg("cannot tell which replica polls; retrying")
	case err == nil:
		r.leadFail = false
	}
	return r.opts.LeaderRetry
}

func (r *Reconciler) takeOver(lease store.Lease, last time.Time) {
	now := r.clock.Now()
	every := spacing(r.opts.Budget)
	first := last.Add(every)
	if last.IsZero() || first.Before(now) {
		first = now
	} else if first.After(now.Add(every)) {
		first = now.Add(every)
	}
	r.limiter = rate.NewLimiter(rate.Every(every), 1)
	r.limiter.ReserveN(first.Add(-every), 1)
	r.lease, r.leadFail = lease, false
	r.setLeading(true)
	r.log.Info().Time("first_request_at", first).Msg("this replica polls Nouvel now")
}

// resign gives up the lease, if any.
func (r *Reconciler) resign() {
	if r.lease != nil {
		r.lease.Release()
		r.lease = nil
	}
	r.setLeading(false)
}

func (r *Reconciler) setLeading(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leading = v
}

// isLeading reports whether this process is the one that polls.
func (r *Reconciler) isLeading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

// step does the next piece of work, if any is due, and returns how long to
// wait before the next one.
func (r *Reconciler) step(ctx context.Context) time.Duration {
	now := r.clock.Now()
	if now.Sub(r.lastSweep) >= sweepEvery {
		r.lastSweep = now
		r.sweep(ctx, now)
	}
	if r.Ready() != nil {
		return sweepEvery // polling stopped: only a restart with a working key resumes it
	}
	if wait := r.paused(now); wait > 0 {
		return wait
	}
	due, err := r.opts.Store.DuePolls(ctx, now, 1)
	if err != nil {
		r.log.Error().Err(err).Msg("read schedule")
		return sweepEvery
	}
	if len(due) == 0 {
		next, ok, err := r.opts.Store.NextPollAt(ctx)
		if err != nil || !ok {
			return sweepEvery
		}
		return min(max(next.Sub(now), time.Millisecond), sweepEvery)
	}
	res := r.limiter.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // re-pick the job when a request is allowed
		return wait
	}
	r.poll(ctx, due[0], now)
	return 0
}

// sweep ends jobs past the TTL and, unless polling alone, flags webhooks
// missed past the grace.
func (r *Reconciler) sweep(ctx context.Context, now time.Time) {
	expired, err := r.opts.Store.ExpireJobs(ctx, now.Add(-r.opts.TTL))
	if err != nil && ctx.Err() == nil {
		r.log.Error().Err(err).Msg("expire jobs")
	}
	for _, id := range expired {
		r.log.Warn().Str("job_id", id).Dur("ttl", r.opts.TTL).Msg("job did not end within NOUVELHOOK_TRACK_TTL; ended as expired")
	}
	if r.opts.WebhookURL == "" {
		// Poll-only: no webhook was asked for, so none can be missed. A job
		// submitted elsewhere may have one, but without
		// NOUVELHOOK_PUBLIC_URL there is no telling, and a warning on every
		// job would be noise.
		return
	}
	n, err := r.opts.Store.MarkMissedWebhooks(ctx, now, r.opts.MissedGrace)
	if err != nil && ctx.Err() == nil {
		r.log.Error().Err(err).Msg("mark missed webhooks")
	}
	if n > 0 {
		r.metrics.missed.Add(float64(n))
		r.log.Warn().Int("jobs", n).Msg("webhooks missed: the poller saw these jobs end and no webhook came")
	}
}

// poll asks Nouvel about one job and records what it learned. The request
// is noted in the lease first, which also proves this process still leads.
func (r *Reconciler) poll(ctx context.Context, p store.PollTarget, now time.Time) {
	if r.lease != nil {
		if err := r.lease.NoteRequest(ctx, now); err != nil {
			if ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("cannot note a request under the poller lead; polling stops here")
			}
			r.resign()
			return
		}
	}
	r.noteRequest(now)
	pctx, cancel := context.WithTimeout(ctx, pollTimeout)
	var lost <-chan struct{} // nil, which never fires, when one process polls alone
	if r.lease != nil {
		// A replica that loses the lead mid-request stops waiting for the
		// answer, so its poll cannot overlap the next leader's; the job
		// stays due for that leader.
		lost = r.lease.Lost()
		go func() {
			select {
			case <-lost:
				cancel()
			case <-pctx.Done():
			}
		}()
	}
	job, info, err := r.opts.Client.GetJob(pctx, p.JobID)
	cancel()
	r.noteRate(info, now)
	if ctx.Err() != nil {
		return // shutting down; the job stays due
	}
	select {
	case <-lost:
		r.log.Warn().Str("job_id", p.JobID).Msg("lost the poller lead during a poll; its answer is left to the next leader")
		return
	default:
	}
	label := pollLabel(err)
	if err == nil && job.Status.Terminal() {
		label = "terminal"
	}
	r.metrics.polls.WithLabelValues(label).Inc()
	var res store.PollResult
	switch {
	case err == nil:
		rep := job.Report()
		res.Report, res.Next = &rep, now.Add(gap(r.opts.Interval, p.Step))
	case errors.Is(err, ErrRateLimited):
		r.pause(now, retryAfter(err), "Nouvel answered 429")
		return
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
		r.lockOut(err)
		return
	case errors.Is(err, ErrNotFound):
		res.NotFound, res.Next = true, now.Add(r.opts.Interval)
		res.Err = fmt.Sprintf("Nouvel answered 404 (%d in a row)", p.NotFound+1)
		if p.NotFound+1 >= notFoundLimit {
			res.End = store.StatusNotFound
		}
	default:
		res.Failed, res.Err = true, err.Error()
		res.Next = now.Add(backoff(r.opts.Interval, p.Failures+1))
	}
	// What was learned is kept even if shutdown begins now.
	outcome, err := r.opts.Store.RecordPoll(context.WithoutCancel(ctx), p.JobID, res)
	if err != nil {
		r.log.Error().Err(err).Str("job_id", p.JobID).Msg("record poll")
		return
	}
	switch {
	case outcome != store.OutcomeAccepted:
	case res.End != "":
		r.log.Warn().Str("job_id", p.JobID).Msg("Nouvel does not know the job; ended as not_found")
	default:
		r.metrics.caught.Inc()
		r.log.Info().Str("job_id", p.JobID).Str("status", string(job.Status)).Msg("poller caught the job's end")
	}
}

// spacing is the least time between requests that keeps any minute within
// budget requests: a minute over the budget, rounded up, since rounded down
// budget+1 requests fit a few nanoseconds under a minute.
func spacing(budget int) time.Duration {
	n := time.Duration(max(budget, 1))
	return (time.Minute + n - 1) / n
}

// gap is the wait after the step-th running answer: the interval, then 1.5×,
// then 2× from then on.
func gap(interval time.Duration, step int) time.Duration {
	switch step {
	case 0:
		return interval
	case 1:
		return interval * 3 / 2
	}
	return 2 * interval
}

// backoff is the wait after the n-th failure in a row: the interval doubled
// per failure, capped at maxBackoff, with jitter over its upper half so that
// jobs that failed together do not retry together.
func backoff(interval time.Duration, n int) time.Duration {
	d := maxBackoff
	if n < 20 && interval<<(n-1) < maxBackoff {
		d = interval << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

func retryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter
	}
	return defaultRetryAfter
}

// noteRate pauses polling when the key's window is nearly spent.
func (r *Reconciler) noteRate(info RateInfo, now time.Time) {
	if info.Known && info.Remaining <= lowRemaining && info.Reset.After(now) {
		r.pause(now, info.Reset.Sub(now), "X-RateLimit-Remaining is low")
	}
}

func (r *Reconciler) pause(now time.Time, d time.Duration, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if until := now.Add(d); until.After(r.pausedUntil) {
		r.pausedUntil = until
		r.log.Warn().Dur("for", d).Str("reason", why).Msg("polling paused")
	}
}

func (r *Reconciler) paused(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pausedUntil.Sub(now)
}

func (r *Reconciler) lockOut(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lockedOut == nil {
		r.lockedOut = fmt.Errorf("polling stopped: %w; set a NOUVEL_API_KEY with projects:read and restart", err)
		r.log.Error().Err(err).Msg("Nouvel refused the API key; polling stopped until restart")
	}
}

// noteRequest records a request time for the budget-use figure.
func (r *Reconciler) noteRequest(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recent = append(r.pruneRecent(now), now)
}

func (r *Reconciler) pruneRecent(now time.Time) []time.Time {
	i := 0
	for i < len(r.recent) && now.Sub(r.recent[i]) >= time.Minute {
		i++
	}
	return r.recent[i:]
}

// budgetUsed is how many requests polling sent in the last minute.
func (r *Reconciler) budgetUsed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recent = r.pruneRecent(r.clock.Now())
	return len(r.recent)
}

// Status is the poller's state as /v1/stats shows it.
type Status struct {
	Enabled            bool       `json:"enabled"`
	BudgetPerMinute    int        `json:"budgetPerMinute"`
	RequestsLastMinute int        `json:"requestsLastMinute"`
	PausedUntil        *time.Time `json:"pausedUntil,omitempty"`
	Stopped            string     `json:"stopped,omitempty"`
	// Leader is whether this replica is the one polling; the others stand
	// by, and RequestsLastMinute counts this replica's requests only.
	Leader     bool   `json:"leader"`
	WebhookURL string `json:"webhookUrl"`
}

// Status reports the poller's state for /v1/stats.
func (r *Reconciler) Status() any {
	st := Status{Enabled: true, BudgetPerMinute: r.opts.Budget, RequestsLastMinute: r.budgetUsed(),
		WebhookURL: r.opts.WebhookURL}
	r.mu.Lock()
	defer r.mu.Unlock()
	st.Leader = r.leading
	if r.pausedUntil.After(r.clock.Now()) {
		t := r.pausedUntil.UTC()
		st.PausedUntil = &t
	}
	if r.lockedOut != nil {
		st.Stopped = r.lockedOut.Error()
	}
	return st
}
