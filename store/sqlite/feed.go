package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// WaitJob returns the job as soon as it is terminal, or as it stands when ctx
// ends (a deadline is not an error). A job not yet in the log is waited for
// too; it is ErrNotFound only if it is still unknown at the end.
//
// It reads the job once, then sleeps until its job enters the change feed (a
// job does so once, when it ends): commits that end other jobs do not wake
// it, and a commit costs no query per waiting job.
func (s *Store) WaitJob(ctx context.Context, jobID string) (store.Job, error) {
	rctx := context.WithoutCancel(ctx)
	// Any end the reads below do not see comes after the cursor.
	if err := s.changes.startCursor(rctx, s); err != nil {
		return store.Job{}, err
	}
	for {
		w := s.changes.watch(s, jobID)
		j, err := s.jobForWait(rctx, jobID)
		if (err == nil && j.Terminal) || (err != nil && !errors.Is(err, store.ErrNotFound)) {
			s.changes.unwatch(w)
			return j, err
		}
		if !s.changes.sleep(ctx, w.ch) {
			s.changes.unwatch(w)
			return s.jobForWait(rctx, jobID)
		}
	}
}

// jobForWait is Job, counted among the reads the wait path makes.
func (s *Store) jobForWait(ctx context.Context, jobID string) (store.Job, error) {
	s.changes.tail.reads.Add(1)
	return s.Job(ctx, jobID)
}

// WaitEvents is Events, but when there are none yet it waits for the first
// until ctx ends, then answers as Events would.
//
// Events are served from the shared tail of the change feed, which one
// waiter refreshes per commit for all; only a cursor older than the tail
// reads the store itself. An event from the tail shows its job as it was
// read just after it ended. Once woken by a commit, a waiter lingers a
// moment (feedLinger) so that the commits of a busy feed reach it in one
// answer rather than one answer each.
func (s *Store) WaitEvents(ctx context.Context, after int64, limit int) ([]store.Job, int64, error) {
	entries, last, err := s.waitFeed(ctx, after, limit)
	if err != nil {
		return nil, 0, err
	}
	jobs := make([]store.Job, len(entries))
	for i, e := range entries {
		jobs[i] = e.job
	}
	return jobs, last, nil
}

// WaitFeed is WaitEvents with each job already encoded, once for all
// readers: what an event stream writes to every subscriber. An event's
// forward is as it stood when the event was read for the tail, usually
// just after the job ended: queued, not yet sent. Job and the queue show
// how it went since.
func (s *Store) WaitFeed(ctx context.Context, after int64, limit int) ([]store.FeedEvent, int64, error) {
	entries, last, err := s.waitFeed(ctx, after, limit)
	if err != nil {
		return nil, 0, err
	}
	events := make([]store.FeedEvent, len(entries))
	for i, e := range entries {
		data, err := e.json()
		if err != nil {
			return nil, 0, err
		}
		events[i] = store.FeedEvent{Seq: e.job.Seq, JSON: data}
	}
	return events, last, nil
}

// feedLinger is how long a feed waiter woken by a commit waits for more
// before it answers.
const feedLinger = 50 * time.Millisecond

func (s *Store) waitFeed(ctx context.Context, after int64, limit int) ([]*feedEntry, int64, error) {
	if limit < 1 || limit > store.MaxLimit || after < 0 {
		_, _, err := s.Events(ctx, after, limit) // the same ErrInvalid
		return nil, 0, err
	}
	for {
		changed, gen := s.changes.wait()
		if err := s.changes.catchUp(ctx, s, gen); err != nil {
			return nil, 0, err
		}
		entries, last, ok := s.changes.tail.after(after, limit)
		if !ok {
			s.changes.tail.reads.Add(1)
			jobs, end, err := s.Events(context.WithoutCancel(ctx), after, limit)
			if err != nil {
				return nil, 0, err
			}
			entries, last = make([]*feedEntry, len(jobs)), end
			for i, j := range jobs {
				entries[i] = newFeedEntry(j)
			}
		}
		if len(entries) > 0 {
			return entries, last, nil
		}
		if !s.changes.sleep(ctx, changed) {
			return entries, last, nil
		}
		s.changes.linger(ctx)
	}
}
