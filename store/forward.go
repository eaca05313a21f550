package store

import (
	"context"
	"time"
)

// ForwardState is where a job's forward to the app stands.
type ForwardState string

// Forward states.
const (
	// ForwardPending: waiting for its next attempt (or in flight).
	ForwardPending ForwardState = "pending"
	// ForwardDelivered: the app answered 2xx.
	ForwardDelivered ForwardState = "delivered"
	// ForwardFailed: every step of the schedule failed; kept until retried.
	ForwardFailed ForwardState = "failed"
	// ForwardPaused: the app answered 410 Gone to this forward, and all
	// forwarding is paused until resumed.
	ForwardPaused ForwardState = "paused"
)

// Known reports whether s is one of the four forward states.
func (s ForwardState) Known() bool {
	switch s {
	case ForwardPending, ForwardDelivered, ForwardFailed, ForwardPaused:
		return true
	}
	return false
}

// Forward is a job's forward to the app, as a job's "forward" field and the
// queue show it.
type Forward struct {
	State ForwardState `json:"state"`
	// Attempts counts attempts whose result was recorded.
	Attempts int `json:"attempts"`
	// LastStatus is the HTTP status of the last attempt; 0 when it got no
	// answer (or there was none yet).
	LastStatus int `json:"lastStatus"`
	// LastError says why the last attempt failed; "" after a success.
	LastError string `json:"lastError"`
	// NextAttemptAt is when a pending forward is due; nil otherwise.
	NextAttemptAt *time.Time `json:"nextAttemptAt"`
	// DeliveredAt is when the app last answered 2xx; nil until then.
	DeliveredAt *time.Time `json:"deliveredAt"`
}

// QueuedForward is one entry of the forwarding queue: a job's forward with
// the job it sends.
type QueuedForward struct {
	JobID string `json:"jobId"`
	Seq   int64  `json:"seq"`
	Forward
	// EnqueuedAt is when the forward was last queued: the job's end, or a
	// retry or replay.
	EnqueuedAt time.Time `json:"enqueuedAt"`
}

// ForwardFilter selects forwards for ListForwards.
type ForwardFilter struct {
	// States keeps forwards in any of these states; empty keeps all.
	States []ForwardState
	// Limit is the page size, 1 to MaxLimit.
	Limit int
	// Cursor is a previous page's next cursor; empty starts at the first.
	Cursor string
}

// ForwardClaim is a forward this process holds under a lease, with the job
// it sends as it stands.
type ForwardClaim struct {
	Job Job
	// Attempt is this attempt's number: 1 for the first.
	Attempt int
	// Token fences the claim: a result recorded under a token the store
	// has since handed out again (the lease ran out and another claim was
	// made) is ignored.
	Token int64
}

// ForwardResult is what one attempt came to.
type ForwardResult struct {
	// At is when the attempt ended; Took how long it ran.
	At   time.Time
	Took time.Duration
	// Status is the app's HTTP status; 0 when there was no answer.
	Status int
	// Err says why the attempt failed; "" for a 2xx.
	Err string
	// State is what the forward becomes: delivered, pending (retry at
	// Next), failed (no step left), or paused (a 410: all forwarding
	// pauses, with Err as the reason).
	State ForwardState
	// Next is when to try again, for State pending.
	Next time.Time
}

// ForwardAttempt is one recorded attempt of a job's forward, for its
// timeline.
type ForwardAttempt struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// TookMs is how long the attempt ran, in milliseconds.
	TookMs int64        `json:"tookMs"`
	Status int          `json:"status"`
	Error  string       `json:"error"`
	State  ForwardState `json:"state"`
}

// ForwardStats are the queue's counts, for /v1/stats, the metrics and the
// admin /readyz.
type ForwardStats struct {
	// ByState counts forwards in each state.
	ByState map[ForwardState]int `json:"byState"`
	// Depth counts forwards not yet delivered nor failed: pending and
	// paused.
	Depth int `json:"depth"`
	// OldestPending is when the longest-waiting pending or paused forward
	// was queued; nil when none waits.
	OldestPending *time.Time `json:"oldestPending"`
	// Paused is set while forwarding is paused, with PauseReason saying
	// why (the app's 410).
	Paused      bool   `json:"paused"`
	PauseReason string `json:"pauseReason,omitempty"`
}

// Forwards is the forwarding queue. A backend opened with forwarding on
// queues a job's forward in the transaction that ends the job; with it off
// nothing is queued at the end, and a job's Forward is nil until a replay
// or retry queues one.
type Forwards interface {
	// ClaimForwards leases up to n pending forwards due at now (their next
	// attempt is at or before now, and no unexpired lease holds them), the
	// lowest seq first, until now+lease; a claim whose lease runs out may
	// be made again, by any process. Nothing is claimed while forwarding is
	// paused. ordered claims at most one, and only the pending forward with
	// the lowest seq: one that is leased or not yet due holds all after it.
	//
	// Ordered, "the lowest seq" is exact on both backends. Unordered, it is
	// exact on Postgres but for a forward another transaction holds locked
	// at that moment (another replica's claim, a retry), which the claim
	// passes over. On SQLite it is exact unless the lowest max(64, n)
	// pending forwards by seq hold fewer than n that are due and more than
	// 1,024 unleased forwards are due: the claim then takes the lowest seqs
	// among the 1,024 longest overdue, so one due more recently (a retry,
	// say) may go after higher seqs that have waited longer. On both, no
	// due forward waits for ever.
	ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]ForwardClaim, error)
	// FinishForward records an attempt's result and ends the claim's
	// lease, and appends the attempt to the job's attempt log. ok is false,
	// and nothing is recorded, when the claim's token is stale. A result in
	// state paused also pauses all forwarding with r.Err as the reason.
	FinishForward(ctx context.Context, c ForwardClaim, r ForwardResult) (ok bool, err error)
	// NextForwardAt is when the soonest pending forward is due (its next
	// attempt, or its lease's end when later); ok is false when none is
	// pending or forwarding is paused.
	NextForwardAt(ctx context.Context) (next time.Time, ok bool, err error)
	// ListForwards returns a page of the queue: failed and paused first,
	// then pending, then delivered, each lowest seq first; and the next
	// page's cursor ("" for the last). A limit outside 1..MaxLimit, a
	// foreign cursor or an unknown state is ErrInvalid.
	ListForwards(ctx context.Context, f ForwardFilter) (forwards []QueuedForward, next string, err error)
	// ForwardAttempts returns the job's recorded attempts, oldest first, at
	// most MaxDeliveries of the latest; ErrNotFound for an unknown job.
	ForwardAttempts(ctx context.Context, jobID string) ([]ForwardAttempt, error)
	// RetryForwards queues again, due at now with its attempts reset, the
	// forward of each named job that is failed, paused or delivered (a job
	// that ended but has none gets one), and resumes forwarding if paused.
	// It returns how many it queued; an unknown job or one not terminal is
	// ErrNotFound or ErrInvalid, and then nothing is queued.
	RetryForwards(ctx context.Context, now time.Time, jobIDs []string) (int, error)
	// ReplayForwards queues again, due at now with attempts reset, the
	// forward of every job with seq > after, whatever its state, creating
	// those missing, and returns how many. A negative after is ErrInvalid.
	ReplayForwards(ctx context.Context, now time.Time, after int64) (int, error)
	// ResumeForwarding ends a pause: paused forwards become pending, due at
	// now. Resuming when not paused is harmless.
	ResumeForwarding(ctx context.Context, now time.Time) error
	// ForwardStats returns the queue's counts and the pause.
	ForwardStats(ctx context.Context) (ForwardStats, error)
}
