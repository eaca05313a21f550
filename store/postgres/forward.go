package postgres

import (
	"context"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// TODO(forwarding): the queue is not built on this backend yet; every method
// fails with ErrUnavailable. This file is replaced by the real queue.

func notYet() error {
	return store.Errorf(store.EUNAVAILABLE, "forwarding is not implemented on postgres yet")
}

// ClaimForwards implements store.Forwards.
func (s *Store) ClaimForwards(ctx context.Context, now time.Time, n int, lease time.Duration, ordered bool) ([]store.ForwardClaim, error) {
	return nil, notYet()
}

// FinishForward implements store.Forwards.
func (s *Store) FinishForward(ctx context.Context, c store.ForwardClaim, r store.ForwardResult) (bool, error) {
	return false, notYet()
}

// NextForwardAt implements store.Forwards.
func (s *Store) NextForwardAt(ctx context.Context) (time.Time, bool, error) {
	return time.Time{}, false, notYet()
}

// ListForwards implements store.Forwards.
func (s *Store) ListForwards(ctx context.Context, f store.ForwardFilter) ([]store.QueuedForward, string, error) {
	return nil, "", notYet()
}

// ForwardAttempts implements store.Forwards.
func (s *Store) ForwardAttempts(ctx context.Context, jobID string) ([]store.ForwardAttempt, error) {
	return nil, notYet()
}

// RetryForwards implements store.Forwards.
func (s *Store) RetryForwards(ctx context.Context, now time.Time, jobIDs []string) (int, error) {
	return 0, notYet()
}

// ReplayForwards implements store.Forwards.
func (s *Store) ReplayForwards(ctx context.Context, now time.Time, after int64) (int, error) {
	return 0, notYet()
}

// ResumeForwarding implements store.Forwards.
func (s *Store) ResumeForwarding(ctx context.Context, now time.Time) error { return notYet() }

// ForwardStats implements store.Forwards.
func (s *Store) ForwardStats(ctx context.Context) (store.ForwardStats, error) {
	return store.ForwardStats{}, notYet()
}

// JobPolls implements store.Timeline.
func (s *Store) JobPolls(ctx context.Context, jobID string) ([]store.PollRecord, error) {
	return nil, notYet()
}

// DeliveryBody implements store.Timeline.
func (s *Store) DeliveryBody(ctx context.Context, jobID string, id int64) ([]byte, error) {
	return nil, notYet()
}
