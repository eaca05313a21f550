package store

import (
	"context"
	"errors"
)

// WaitJob returns the job as soon as it is terminal, or as it stands when ctx
// ends (a deadline is not an error). A job not yet in the log is waited for
// too; it is ErrNotFound only if it is still unknown at the end.
//
// It reads the job once, then sleeps until its job enters the change feed (a
// job does so once, when it ends): commits that end other jobs do not wake
// it, and a commit costs no query per waiting job.
func (s *Store) WaitJob(ctx context.Context, jobID string) (Job, error) {
	rctx := context.WithoutCancel(ctx)
	// Only a tail that has read the store once sees every later end.
	if err := s.changes.catchUp(ctx, s, 0); err != nil {
		return Job{}, err
	}
	for {
		w := s.changes.watch(s, jobID)
		j, err := s.jobForWait(rctx, jobID)
		if (err == nil && j.Terminal) || (err != nil && !errors.Is(err, ErrNotFound)) {
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
func (s *Store) jobForWait(ctx context.Context, jobID string) (Job, error) {
	s.changes.tail.reads.Add(1)
	return s.Job(ctx, jobID)
}

// WaitEvents is Events, but when there are none yet it waits for the first
// until ctx ends, then answers as Events would.
//
// Events are served from the shared tail of the change feed, which one
// waiter refreshes per commit for all; only a cursor older than the tail
// reads the store itself. An event from the tail shows its job as it was
// read just after it ended.
func (s *Store) WaitEvents(ctx context.Context, after int64, limit int) ([]Job, int64, error) {
	if limit < 1 || limit > MaxLimit || after < 0 {
		return s.Events(ctx, after, limit) // the same ErrInvalid
	}
	for {
		changed, gen := s.changes.wait()
		if err := s.changes.catchUp(ctx, s, gen); err != nil {
			return nil, 0, err
		}
		jobs, last, ok := s.changes.tail.after(after, limit)
		if !ok {
			s.changes.tail.reads.Add(1)
			var err error
			if jobs, last, err = s.Events(context.WithoutCancel(ctx), after, limit); err != nil {
				return jobs, last, err
			}
		}
		if len(jobs) > 0 {
			return jobs, last, nil
		}
		if !s.changes.sleep(ctx, changed) {
			return jobs, last, nil
		}
	}
}
