package handler

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStoreCheckChecksAtMostOncePerTTL(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	calls := 0
	var fail, failed error
	s := &storeCheck{
		now:    func() time.Time { return now },
		check:  func(context.Context) error { calls++; return fail },
		failed: func() error { return failed },
	}
	ctx := context.Background()
	for range 100 {
		if err := s.ready(ctx); err != nil {
			t.Fatalf("ready: %v", err)
		}
	}
	if calls != 1 {
		t.Fatalf("100 probes within %v made %d checks, want 1", readyTTL, calls)
	}

	fail = errors.New("disk full")
	now = now.Add(readyTTL - time.Millisecond)
	if err := s.ready(ctx); err != nil || calls != 1 {
		t.Fatalf("within the TTL: err %v, calls %d; want the cached nil, 1", err, calls)
	}
	now = now.Add(time.Millisecond)
	if err := s.ready(ctx); err == nil || calls != 2 {
		t.Fatalf("after the TTL: err %v, calls %d; want the new failure, 2", err, calls)
	}

	// A clock that steps back does not pin an old answer.
	fail = nil
	now = now.Add(-time.Hour)
	if err := s.ready(ctx); err != nil || calls != 3 {
		t.Fatalf("after a clock step back: err %v, calls %d; want nil, 3", err, calls)
	}

	// A commit that fails ends a kept "ready" at once; the failure is then
	// kept like any answer, so a flood of probes on a full disk costs one
	// probe write per TTL.
	failed, fail = errors.New("commit failed"), errors.New("still full")
	for range 10 {
		if err := s.ready(ctx); err == nil {
			t.Fatal("ready after a failed commit")
		}
	}
	if calls != 4 {
		t.Fatalf("10 probes after a failed commit made %d checks in all, want 4", calls)
	}
}

func TestStoreCheckDoesNotKeepAnAbandonedCheck(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	calls := 0
	s := &storeCheck{
		now: func() time.Time { return now },
		check: func(ctx context.Context) error {
			calls++
			return ctx.Err()
		},
		failed: func() error { return nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ready(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check: %v", err)
	}
	if err := s.ready(context.Background()); err != nil || calls != 2 {
		t.Fatalf("next check: err %v, calls %d; want nil, 2 (the cancelled result not kept)", err, calls)
	}
}
