package store

import (
	"context"
	"errors"
)

// WaitJob returns the job as soon as it is terminal, or as it stands when ctx
// ends (a deadline is not an error). A job not yet in the log is waited for
// too; it is ErrNotFound only if it is still unknown at the end.
func (s *Store) WaitJob(ctx context.Context, jobID string) (Job, error) {
	for {
		changed := s.changes.wait()
		j, err := s.Job(context.WithoutCancel(ctx), jobID)
		if (err == nil && j.Terminal) || (err != nil && !errors.Is(err, ErrNotFound)) {
			return j, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return j, err
		}
	}
}

// WaitEvents is Events, but when there are none yet it waits for the first
// until ctx ends, then answers as Events would.
func (s *Store) WaitEvents(ctx context.Context, after int64, limit int) ([]Job, int64, error) {
	for {
		changed := s.changes.wait()
		jobs, last, err := s.Events(context.WithoutCancel(ctx), after, limit)
		if err != nil || len(jobs) > 0 {
			return jobs, last, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return jobs, last, nil
		}
	}
}
