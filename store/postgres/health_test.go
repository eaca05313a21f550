package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// walBytes is how much WAL Postgres has written so far.
func walBytes(t *testing.T, s *Store) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(),
		`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// After a failed commit, readiness stays failed until a write as large as
// a delivery commits: a small one may fit where a delivery does not. Ping
// makes that write itself, of Options.MaxBody bytes that do not compress.
func TestPingProvesRoomForADelivery(t *testing.T) {
	ctx := context.Background()
	dbURL, p, addr := proxied(t)
	const maxBody = 4 << 20
	s := openTest(t, dbURL, Options{MaxBody: maxBody})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	p.cut()
	big := completed("big")
	big.Body = append(big.Body, bytes.Repeat([]byte(" "), 300<<10)...)
	if _, err := s.RecordWebhook(ctx, big); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("delivery while cut off: %v; want ErrUnavailable", err)
	}
	p.start(addr)
	if _, _, err := s.Track(ctx, "small", t0); err != nil {
		t.Fatalf("a small write once back: %v", err)
	}
	if err := s.Failed(); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Failed after only a small write committed: %v; want the failure still", err)
	}
	before := walBytes(t, s)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once back: %v", err)
	}
	if wrote := walBytes(t, s) - before; wrote < maxBody {
		t.Errorf("Ping while failing wrote %d bytes of WAL; want at least MaxBody, %d", wrote, maxBody)
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after the probe: %v", err)
	}
	var probes int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM meta WHERE key = 'probe'`).Scan(&probes); err != nil || probes != 0 {
		t.Errorf("probe rows left: %d, %v; want none", probes, err)
	}

	// A delivery as large as the one that failed clears a failure too.
	p.cut()
	if _, err := s.RecordWebhook(ctx, big); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("delivery while cut off again: %v", err)
	}
	p.start(addr)
	if _, err := s.RecordWebhook(ctx, completed("small-delivery")); err != nil {
		t.Fatal(err)
	}
	if err := s.Failed(); err == nil {
		t.Fatal("Failed after a smaller delivery: nil; want the failure still")
	}
	if _, err := s.RecordWebhook(ctx, big); err != nil {
		t.Fatal(err)
	}
	if err := s.Failed(); err != nil {
		t.Errorf("Failed after the same delivery committed: %v", err)
	}
}

// A Postgres that stalls (no bytes, no close) fails each webhook within
// Nouvel's 5 s, counted from its own call, however many wait behind the
// stalled write, so Nouvel sees a 503 and retries rather than timing out;
// and the store recovers by itself when the stall ends.
func TestStallAnswersWithinNouvelsTimeout(t *testing.T) {
	ctx := context.Background()
	dbURL, p, _ := proxied(t)
	s := openTest(t, dbURL, Options{})
	if _, err := s.RecordWebhook(ctx, completed("before")); err != nil {
		t.Fatal(err)
	}
	p.stall(true)
	const senders = 12
	var wg sync.WaitGroup
	for i := range senders {
		time.Sleep(150 * time.Millisecond) // each arrives later, behind the ones before
		wg.Go(func() {
			start := time.Now()
			_, err := s.RecordWebhook(ctx, completed(fmt.Sprintf("during-%d", i)))
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) || took >= 5*time.Second {
				t.Errorf("webhook %d during the stall: %v after %v; want ErrUnavailable within 5s", i, err, took)
			}
		})
	}
	wg.Wait()
	if err := s.Failed(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Failed during the stall: %v; want ErrUnavailable", err)
	}
	p.stall(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.RecordWebhook(ctx, completed("after"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no webhook taken 15s after the stall ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the stall: %v", err)
	}
}
