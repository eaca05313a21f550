// Package store is nouvelhook's domain: jobs, their reports and deliveries,
// the Status type with the one terminal set, the Error type with its codes,
// and Store, the interface every backend implements (store/sqlite,
// store/postgres) and store/storetest checks. It imports no database.
package store

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Store is the job log: what the handlers, the reconciler and the CLI need
// of a backend. Every method is safe for concurrent use. Errors are *Error
// values, matched with errors.Is against ErrNotFound, ErrInvalid and
// ErrUnavailable (or by ErrorCode); any other error is an internal failure
// of a read. A write that fails with ErrUnavailable stored nothing.
type Store interface {
	// RecordWebhook commits a verified delivery: its raw bytes in the
	// delivery log and, for a usable event, the job's terminal state and
	// feed entry, all in one transaction, and returns once that is durable.
	// The first terminal report of a job wins; a later one is a duplicate
	// (the same end) or a conflict (another end), and bytes identical to a
	// delivery already stored for the job are stored once, counted in
	// Copies. A report that is not terminal or names an invalid job id is
	// ErrInvalid; ErrUnavailable means nothing was stored.
	RecordWebhook(ctx context.Context, d WebhookDelivery) (Outcome, error)
	// RecordPoll commits a poll of jobID and its schedule (r.Next). A
	// terminal Report, or r.End, ends the job through the same path as a
	// webhook, with source poll, and the outcome says whether this poll was
	// first; a poll of a job already ended, or not in the log, changes
	// nothing. ErrUnavailable means nothing was stored.
	RecordPoll(ctx context.Context, jobID string, r PollResult) (Outcome, error)
	// Track adds a job the log has not heard of, as pending, with its first
	// poll due at firstPoll. created is false when the job was already
	// known; either way the job is returned as it now stands. An invalid
	// job id is ErrInvalid.
	Track(ctx context.Context, jobID string, firstPoll time.Time) (j Job, created bool, err error)
	// Job returns the job with the given id, or ErrNotFound.
	Job(ctx context.Context, jobID string) (Job, error)
	// JobWithDeliveries returns the job with its last MaxDeliveries
	// verified deliveries, oldest first, and DeliveriesTotal set, or
	// ErrNotFound.
	JobWithDeliveries(ctx context.Context, jobID string) (Job, error)
	// ListJobs returns a page of jobs, newest first, and the cursor of the
	// next page ("" when this is the last). A limit outside 1..MaxLimit, a
	// cursor this store did not return, or an unknown status is ErrInvalid.
	ListJobs(ctx context.Context, f Filter) (jobs []Job, next string, err error)
	// Events returns up to limit jobs that became terminal with seq > after,
	// oldest first, and the seq of the last one (after itself when none).
	// Seqs are contiguous, given in commit order, and never reused. A limit
	// outside 1..MaxLimit or a negative after is ErrInvalid.
	Events(ctx context.Context, after int64, limit int) (jobs []Job, last int64, err error)
	// WaitJob returns the job as soon as it is terminal, or as it stands
	// when ctx ends (a deadline is not an error). A job not yet in the log
	// is waited for too; it is ErrNotFound only if still unknown at the end.
	WaitJob(ctx context.Context, jobID string) (Job, error)
	// WaitEvents is Events, but when there are none yet it waits for the
	// first until ctx ends, then answers as Events would (ctx's end is not
	// an error). Its errors are those of Events.
	WaitEvents(ctx context.Context, after int64, limit int) (jobs []Job, last int64, err error)
	// WaitFeed is WaitEvents with each job already encoded as JSON, shared
	// by every reader of the event. Its errors are those of Events.
	WaitFeed(ctx context.Context, after int64, limit int) (events []FeedEvent, last int64, err error)
	// Stats returns counts over the whole log; jobs and deliveries removed
	// by Prune leave them, LastSeq does not move back.
	Stats(ctx context.Context) (Stats, error)
	// DuePolls returns up to limit jobs that are not terminal and due at
	// now, the longest overdue first.
	DuePolls(ctx context.Context, now time.Time, limit int) ([]PollTarget, error)
	// NextPollAt is when the soonest job not yet terminal is due; ok is
	// false when no job waits for a poll.
	NextPollAt(ctx context.Context) (next time.Time, ok bool, err error)
	// ExpireJobs ends as expired every job still not terminal that was
	// tracked at or before cutoff, and returns their ids. ErrUnavailable
	// means none was ended.
	ExpireJobs(ctx context.Context, cutoff time.Time) ([]string, error)
	// MarkMissedWebhooks checks, once each, the jobs whose end a poll saw at
	// or before now-grace, flags those with no verified webhook received
	// within grace of that, and returns how many it flagged.
	MarkMissedWebhooks(ctx context.Context, now time.Time, grace time.Duration) (int, error)
	// Prune deletes up to batch jobs that ended before cutoff, oldest end
	// first, with their deliveries, forwards, forward attempts and polls,
	// and up to batch signed deliveries that named no usable job and last
	// arrived before cutoff; it returns how many jobs it deleted. A job
	// whose forward waits to be sent (pending, in flight or not, or paused)
	// is kept, however old, until it is delivered or failed, and the jobs
	// after it are pruned all the same. Seq is never reused. A batch below
	// 1 is ErrInvalid.
	Prune(ctx context.Context, cutoff time.Time, batch int) (deleted int, err error)
	// Ping reports whether the store takes deliveries: nil, or an error
	// matching ErrUnavailable that says why not. It may write.
	Ping(ctx context.Context) error
	// Failed reports, without writing, the failure Ping would start from:
	// ErrUnavailable while commits have been failing or the store is
	// closed. nil does not prove the store can commit.
	Failed() error
	Forwards
	Timeline

	// Close stops taking writes, commits those already queued and releases
	// the backend. Later writes fail with ErrUnavailable. Closing twice is
	// harmless.
	Close() error
}

// Leadership is implemented by a backend that several processes may share,
// so that one of them at a time polls Nouvel: the API key's request budget
// is shared by every replica, and a job polled by two at once would spend it
// twice. The reconciler polls only while it holds a Lease.
type Leadership interface {
	// AcquireLeadership tries once, without waiting, to make this process
	// the one that polls. ok is false, with a nil error, when another
	// process leads; an error (ErrUnavailable) means the backend could not
	// be asked, and the caller should try again later either way.
	AcquireLeadership(ctx context.Context) (lease Lease, ok bool, err error)
	// PollerState returns what the leaders noted for whoever polls next:
	// the last request, the last pause, and the lock-out of the key whose
	// fingerprint is key ("" asks for none). Any process may read it,
	// leading or not: a new leader reads it once it holds its Lease, so it
	// sees everything the one before noted; the others read it to show a
	// lock-out. A key that is not a fingerprint (see CheckKeyFingerprint)
	// is ErrInvalid.
	PollerState(ctx context.Context, key string) (PollerState, error)
}

// PollerState is what one leader hands to the next through the store.
type PollerState struct {
	// LastRequest is the latest request a leader noted, zero when none
	// did, so that a new leader can keep its first request a budget's
	// spacing after it.
	LastRequest time.Time
	// Pause is the pause a leader noted last (zero Until when none); it
	// may have ended already.
	Pause PollerPause
	// LockOut is Nouvel's refusal of the key asked about, zero At when
	// none is recorded.
	LockOut LockOut
}

// PollerPause is a time before which no request may go out to Nouvel,
// because Nouvel said so (a 429's Retry-After, or a rate-limit window
// nearly spent).
type PollerPause struct {
	Until  time.Time
	Reason string
}

// LockOut is Nouvel's refusal (401 or 403) of one API key.
type LockOut struct {
	// At is when the refusal was noted; zero means none.
	At time.Time
	// Reason says what Nouvel answered; it never holds the key.
	Reason string
}

// maxKeyFingerprint is the longest fingerprint: a whole hex SHA-256.
const maxKeyFingerprint = 64

// CheckKeyFingerprint is nil for a key fingerprint a backend may store (1
// to 64 lowercase hex digits, such as a truncated HMAC of the key) and
// ErrInvalid otherwise, so that an API key passed by mistake is refused
// rather than written down.
func CheckKeyFingerprint(key string) error {
	if key == "" || len(key) > maxKeyFingerprint {
		return Errorf(EINVALID, "a key fingerprint is 1 to %d hex digits, got %d characters", maxKeyFingerprint, len(key))
	}
	for _, c := range key {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return Errorf(EINVALID, "a key fingerprint is lowercase hex digits")
		}
	}
	return nil
}

// Lease is leadership held: until Lost is closed or Release returns, no
// other process sharing the store holds one. Its Note methods write on
// behalf of the leader: an error from any of them means this process may no
// longer lead, so it sends nothing more and treats the lease as lost.
type Lease interface {
	// Lost is closed once leadership has ended: released, or the backend
	// can no longer vouch for it (a lost connection), after which another
	// process may lead.
	Lost() <-chan struct{}
	// NoteRequest records, before it is sent, that a Nouvel request goes out
	// at t, and checks that this process still leads.
	NoteRequest(ctx context.Context, t time.Time) error
	// NotePause records, before polling stops for it, that no request may
	// go out before p.Until; it replaces the pause noted before.
	NotePause(ctx context.Context, p PollerPause) error
	// NoteLockOut records that Nouvel refused the key whose fingerprint is
	// key, replacing that key's record; a zero l.At clears it (the key was
	// accepted). Other keys' records are left alone. A key that is not a
	// fingerprint is ErrInvalid.
	NoteLockOut(ctx context.Context, key string, l LockOut) error
	// Release gives leadership up; Lost is closed when it returns. Releasing
	// twice is harmless.
	Release() error
}

// The meta rows (key, text value) in which a backend keeps PollerState, the
// same on every backend. Times are unix nanoseconds.
const (
	// PollerLastRequestRow holds the last request noted, in decimal.
	PollerLastRequestRow = "poller_last_request"
	// PollerPauseRow holds the last pause noted, as PollerPauseValue
	// writes it.
	PollerPauseRow = "poller_pause"
	// PollerLockOutRowPrefix followed by a key's fingerprint names the row
	// holding that key's lock-out, as LockOutValue writes it.
	PollerLockOutRowPrefix = "poller_lockout_"
)

// PollerRows returns the rows PollerState reads for the key fingerprint
// key ("" for none), or ErrInvalid for a key that is not a fingerprint.
func PollerRows(key string) ([]string, error) {
	rows := []string{PollerLastRequestRow, PollerPauseRow}
	if key == "" {
		return rows, nil
	}
	if err := CheckKeyFingerprint(key); err != nil {
		return nil, err
	}
	return append(rows, PollerLockOutRowPrefix+key), nil
}

// pollerRow is the JSON of a pause row (At is Until) and of a lock-out row.
type pollerRow struct {
	At     int64  `json:"at"`
	Reason string `json:"reason"`
}

func (r pollerRow) value() string {
	b, _ := json.Marshal(r) // cannot fail: an int and a string
	return string(b)
}

// PollerPauseValue is the value of the PollerPauseRow for p.
func PollerPauseValue(p PollerPause) string {
	return pollerRow{At: p.Until.UnixNano(), Reason: p.Reason}.value()
}

// LockOutValue is the value of a lock-out row for l.
func LockOutValue(l LockOut) string {
	return pollerRow{At: l.At.UnixNano(), Reason: l.Reason}.value()
}

// ReadPollerRow sets the part of st that the row named name, one of
// PollerRows, holds; a value it cannot read is ErrUnavailable.
func (st *PollerState) ReadPollerRow(name, value string) error {
	var err error
	var r pollerRow
	if name == PollerLastRequestRow {
		r.At, err = strconv.ParseInt(value, 10, 64)
	} else {
		err = json.Unmarshal([]byte(value), &r)
	}
	if err != nil {
		return Errorf(EUNAVAILABLE, "store unavailable: poller state %s %q: %v", name, value, err)
	}
	var at time.Time
	if r.At != 0 {
		at = time.Unix(0, r.At)
	}
	switch {
	case name == PollerLastRequestRow:
		st.LastRequest = at
	case name == PollerPauseRow:
		st.Pause = PollerPause{Until: at, Reason: r.Reason}
	case strings.HasPrefix(name, PollerLockOutRowPrefix):
		st.LockOut = LockOut{At: at, Reason: r.Reason}
	}
	return nil
}
