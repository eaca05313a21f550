// Package store is nouvelhook's domain: jobs, their reports and deliveries,
// the Status type with the one terminal set, the Error type with its codes,
// and Store, the interface every backend implements (store/sqlite,
// store/postgres) and store/storetest checks. It imports no database.
package store

import (
	"context"
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
}

// Lease is leadership held: until Lost is closed or Release returns, no
// other process sharing the store holds one.
type Lease interface {
	// Lost is closed once leadership has ended: released, or the backend
	// can no longer vouch for it (a lost connection), after which another
	// process may lead.
	Lost() <-chan struct{}
	// NoteRequest records, before it is sent, that a Nouvel request goes out
	// at t, and checks that this process still leads. An error means it may
	// not: send nothing, and treat the lease as lost.
	NoteRequest(ctx context.Context, t time.Time) error
	// LastRequest is the latest t any leader noted, zero when none did, so
	// that a new leader can keep its first request a budget's spacing
	// after the last one of the leader before it.
	LastRequest(ctx context.Context) (time.Time, error)
	// Release gives leadership up; Lost is closed when it returns. Releasing
	// twice is harmless.
	Release() error
}
