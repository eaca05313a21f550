// Package reconcile polls Nouvel for jobs the webhooks missed, within a
// request budget, and submits generate requests through the service.
package reconcile

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

	// fingerprint names the API key in the store (see keyFingerprint);
	// started is when this process started: a lock-out of the key noted
	// before then is checked once more (see adopt).
	fingerprint string
	started     time.Time

	mu          sync.Mutex
	pausedUntil time.Time
	pauseReason string
	// lock is this process's lock-out, zero At while Nouvel has not
	// refused the key (or a refusal noted before this process started is
	// still to be checked); lockNoted is whether the store holds it, so
	// the other replicas know.
	lock      store.LockOut
	lockNoted bool
	// refused is the store's lock-out of this key, as last read or noted.
	refused   store.LockOut
	recent    []time.Time // request times within the last minute
	lastSweep time.Time
	leading   bool

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
		opts:    opts,
		clock:   opts.Clock,
		started: opts.Clock.Now(),
		// A burst of one keeps any minute-long window within the budget.
		limiter: rate.NewLimiter(rate.Every(spacing(opts.Budget)), 1),
		log:     opts.Logger.With().Str("component", "reconciler").Logger(),
		wake:    make(chan struct{}, 1),
	}
	if opts.Client != nil {
		r.fingerprint = keyFingerprint(opts.Client.key)
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

// Ready is nil unless Nouvel refused the API key, as this replica or
// another one sharing the store found, in which case it says so.
func (r *Reconciler) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.lock.At.IsZero():
		return lockOutErr(r.lock)
	case !r.refused.At.IsZero():
		return fmt.Errorf("polling held: Nouvel refused this API key at %s (%s); this replica started since, "+
			"and checks the key with one request when it polls", r.refused.At.UTC().Format(time.RFC3339), r.refused.Reason)
	}
	return nil
}

// lockOutErr is what Ready and Status say about a lock-out.
func lockOutErr(l store.LockOut) error {
	return fmt.Errorf("polling stopped: %s; set a NOUVEL_API_KEY with projects:read and restart", l.Reason)
}

// lockedOut reports whether Nouvel refused the key: no request goes out.
func (r *Reconciler) lockedOut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.lock.At.IsZero()
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
// one process's alone. On taking over, this process reads what the leader
// before noted: the pause and the lock-out, which it keeps to, and the
// last request, after which it seeds the limiter (see takeOver). A process
// that does not lead reads them too, so that its /readyz and /v1/stats show
// a lock-out or a pause all the same. A locked-out process still leads, to
// run the sweeps; it just sends nothing.
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
	if err == nil {
		// Read after the lock is held: the leader before held it until all
		// it noted had committed.
		var st store.PollerState
		if st, err = ld.PollerState(actx, r.fingerprint); err != nil && ok {
			lease.Release()
		} else if err == nil {
			r.adopt(st, ok)
		}
		if err == nil && ok {
			r.takeOver(lease, st.LastRequest)
			if err = r.noteLockOut(actx); err == nil {
				return 0
			}
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

// adopt takes in what the leaders noted in the store. A pause is kept to
// until it ends. A lock-out of this key noted since this process started
// stops polling; one noted before it started (a restart, often to fix the
// key) is checked with the next request, which either notes it again or
// clears it. A lock-out cleared in the store, as another replica found the
// key accepted, ends this one's too. leading is whether this process just
// took the lead, to log only what it will act on.
func (r *Reconciler) adopt(st store.PollerState, leading bool) {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := st.Pause; p.Until.After(r.pausedUntil) {
		r.pausedUntil, r.pauseReason = p.Until, p.Reason
		if leading && p.Until.After(now) {
			r.log.Warn().Time("until", p.Until).Str("reason", p.Reason).Msg("polling paused, as the leader before was asked to")
		}
	}
	lo := st.LockOut
	switch {
	case lo.At.IsZero():
		if r.lockNoted && !r.lock.At.IsZero() {
			r.log.Info().Msg("another replica found the API key accepted; polling may resume")
			r.lock = store.LockOut{}
		}
		r.lockNoted = false
	case !r.lock.At.IsZero():
		r.lockNoted = true
	case !lo.At.Before(r.started):
		r.lock, r.lockNoted = lo, true
		r.log.Error().Str("reason", lo.Reason).Time("at", lo.At).
			Msg("Nouvel refused the API key, as another replica found; polling stopped until restart")
	}
	r.refused = lo
}

// noteLockOut writes this process's lock-out to the store if it is not
// there yet, so that the other replicas stop too. An error means the lease
// is lost: it has been released.
func (r *Reconciler) noteLockOut(ctx context.Context) error {
	r.mu.Lock()
	lo, noted := r.lock, r.lockNoted
	r.mu.Unlock()
	if r.lease == nil || r.fingerprint == "" || lo.At.IsZero() || noted {
		return nil
	}
	if err := r.lease.NoteLockOut(ctx, r.fingerprint, lo); err != nil {
		r.resign()
		return err
	}
	r.mu.Lock()
	r.refused, r.lockNoted = lo, true
	r.mu.Unlock()
	return nil
}

// keyAccepted clears, when Nouvel has just accepted the key, a lock-out of
// it noted before this process started.
func (r *Reconciler) keyAccepted(ctx context.Context) {
	r.mu.Lock()
	at := r.refused.At
	r.mu.Unlock()
	if r.lease == nil || at.IsZero() {
		return
	}
	if err := r.lease.NoteLockOut(ctx, r.fingerprint, store.LockOut{}); err != nil {
		if ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("cannot clear the API key's lock-out under the poller lead; polling stops here")
		}
		r.resign()
		return
	}
	r.mu.Lock()
	r.refused = store.LockOut{}
	r.mu.Unlock()
	r.log.Info().Time("refused_at", at).Msg("Nouvel accepts the API key it refused before this replica started; lock-out cleared")
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
	if r.lockedOut() {
		r.log.Info().Msg("this replica leads now, to run the sweeps; it sends nothing, since Nouvel refused the API key")
		return
	}
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
	if r.lockedOut() {
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
	// What was learned is kept even if shutdown begins now.
	wctx := context.WithoutCancel(ctx)
	r.noteRate(wctx, info, now)
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
		r.keyAccepted(wctx)
		rep := job.Report()
		res.Report, res.Next = &rep, now.Add(gap(r.opts.Interval, p.Step))
	case errors.Is(err, ErrRateLimited):
		r.pause(wctx, now, retryAfter(err), "Nouvel answered 429")
		return
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
		r.lockOut(wctx, err, now)
		return
	case errors.Is(err, ErrNotFound):
		r.keyAccepted(wctx)
		res.NotFound, res.Next = true, now.Add(r.opts.Interval)
		res.Err = fmt.Sprintf("Nouvel answered 404 (%d in a row)", p.NotFound+1)
		if p.NotFound+1 >= notFoundLimit {
			res.End = store.StatusNotFound
		}
	default:
		res.Failed, res.Err = true, err.Error()
		res.Next = now.Add(backoff(r.opts.Interval, p.Failures+1))
	}
	outcome, err := r.opts.Store.RecordPoll(wctx, p.JobID, res)
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
func (r *Reconciler) noteRate(ctx context.Context, info RateInfo, now time.Time) {
	if info.Known && info.Remaining <= lowRemaining && info.Reset.After(now) {
		r.pause(ctx, now, info.Reset.Sub(now), "X-RateLimit-Remaining is low")
	}
}

// pause stops polling for d, unless a pause already runs longer, and notes
// it in the lease before polling stops, so that a leader after this one
// keeps to it too.
func (r *Reconciler) pause(ctx context.Context, now time.Time, d time.Duration, why string) {
	until := now.Add(d)
	r.mu.Lock()
	longer := until.After(r.pausedUntil)
	if longer {
		r.pausedUntil, r.pauseReason = until, why
		r.log.Warn().Dur("for", d).Str("reason", why).Msg("polling paused")
	}
	r.mu.Unlock()
	if !longer || r.lease == nil {
		return
	}
	if err := r.lease.NotePause(ctx, store.PollerPause{Until: until, Reason: why}); err != nil {
		r.log.Warn().Err(err).Msg("cannot note the pause under the poller lead; polling stops here")
		r.resign()
	}
}

func (r *Reconciler) paused(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pausedUntil.Sub(now)
}

// lockOut stops polling after Nouvel refused the key, and notes it in the
// lease, so that the other replicas do not try the key again.
func (r *Reconciler) lockOut(ctx context.Context, err error, now time.Time) {
	r.mu.Lock()
	if r.lock.At.IsZero() {
		r.lock, r.lockNoted = store.LockOut{At: now, Reason: err.Error()}, false
		r.log.Error().Err(err).Msg("Nouvel refused the API key; polling stopped until restart")
	}
	r.mu.Unlock()
	if err := r.noteLockOut(ctx); err != nil {
		r.log.Warn().Err(err).Msg("cannot note the lock-out under the poller lead; polling stops here")
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
	// PauseReason says why polling is paused, while it is.
	PauseReason string `json:"pauseReason,omitempty"`
	Stopped     string `json:"stopped,omitempty"`
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
		st.PausedUntil, st.PauseReason = &t, r.pauseReason
	}
	if !r.lock.At.IsZero() {
		st.Stopped = lockOutErr(r.lock).Error()
	}
	return st
}

// fingerprintLabel is what a key's fingerprint is the HMAC of.
const fingerprintLabel = "nouvelhook poller key fingerprint v1"

// keyFingerprint names the API key in the store, where a lock-out is noted
// against it, without revealing it: the first 16 hex digits (64 bits) of
// HMAC-SHA256 of a fixed label keyed by the key. A new key has another
// fingerprint, so its lock-out is not the old key's. It is never logged.
func keyFingerprint(apiKey string) string {
	if apiKey == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(apiKey))
	m.Write([]byte(fingerprintLabel))
	return hex.EncodeToString(m.Sum(nil))[:16]
}
