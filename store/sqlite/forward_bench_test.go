package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// queueLog writes a log of ended jobs, each with a forward: the first
// waiting are pending (due at base, or, with backoff, an hour later), the
// rest delivered. It returns the file's path and base.
func queueLog(b testing.TB, ended, waiting int, backoff bool) (string, time.Time) {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "nh.db")
	s := openForwarding(b, path) // migrates
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	due := base.UnixNano()
	if backoff {
		due = base.Add(time.Hour).UnixNano()
	}
	db := rawDB(b, path)
	for _, q := range []string{
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO jobs (id, job_id, status, terminal, source, progress, created_at, updated_at, terminal_at, seq)
			SELECT i, 'job-' || i, 'completed', 1, 'webhook', 100, %d + i, %d + i, %d + i, i FROM n`,
			ended, base.UnixNano(), base.UnixNano(), base.UnixNano()),
		fmt.Sprintf(`INSERT INTO forwards (job_row, seq, state, attempts, last_status, next_attempt_at,
			delivered_at, enqueued_at)
			SELECT id, seq, CASE WHEN seq <= %[1]d THEN 'pending' ELSE 'delivered' END, 1, 200,
				CASE WHEN seq <= %[1]d THEN %[2]d END, CASE WHEN seq > %[1]d THEN %[3]d END, %[3]d
			FROM jobs`, waiting, due, base.UnixNano()),
		fmt.Sprintf(`UPDATE counters SET n = %d WHERE name = 'seq'`, ended),
		`INSERT INTO counters (name, n) SELECT 'forward:' || state, COUNT(*) FROM forwards GROUP BY state`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatalf("%.60s: %v", q, err)
		}
	}
	db.Close()
	return path, base
}

// The queue's reads on a log of a million forwards, 100,000 of them
// waiting: what the forwarder's timer, a metrics scrape and the console's
// first page cost.
func BenchmarkForwardReads(b *testing.B) {
	ctx := context.Background()
	path, base := queueLog(b, 1_000_000, 100_000, false)
	s := openForwarding(b, path)
	// A few leased, as while attempts are in flight.
	if _, err := s.ClaimForwards(ctx, base, 8, time.Minute, false); err != nil {
		b.Fatal(err)
	}
	b.Run("NextForwardAt", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.NextForwardAt(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ForwardStats", func(b *testing.B) {
		for b.Loop() {
			if st, err := s.ForwardStats(ctx); err != nil || st.Depth != 100_000 {
				b.Fatal(st, err)
			}
		}
	})
	b.Run("ListForwards", func(b *testing.B) {
		for b.Loop() {
			if fs, _, err := s.ListForwards(ctx, store.ForwardFilter{Limit: 50}); err != nil || len(fs) != 50 {
				b.Fatal(len(fs), err)
			}
		}
	})
	b.Run("JobWithForward", func(b *testing.B) {
		for b.Loop() {
			if j, err := s.Job(ctx, "job-500000"); err != nil || j.Forward == nil {
				b.Fatal(j, err)
			}
		}
	})
}

// One claim and its result, the forwarder's write per forward, with a
// backlog of 100,000 due; and with those all waiting out a retry, so that a
// claim walks past them to the few due after.
func BenchmarkClaimAndFinish(b *testing.B) {
	for _, backoff := range []bool{false, true} {
		b.Run(fmt.Sprint("backoff=", backoff), func(b *testing.B) {
			ctx := context.Background()
			path, base := queueLog(b, 200_000, 100_000, backoff)
			s := openForwarding(b, path)
			now := base.Add(2 * time.Hour)
			if backoff {
				// Queue the rest again, due now, after the ones in backoff.
				if _, err := s.ReplayForwards(ctx, base, 100_000); err != nil {
					b.Fatal(err)
				}
				now = base.Add(time.Minute)
			}
			for b.Loop() {
				c, err := s.ClaimForwards(ctx, now, 1, time.Minute, false)
				if err != nil || len(c) != 1 {
					b.Fatal(len(c), err)
				}
				if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: now, Status: 200, State: store.ForwardDelivered}); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// What queueing a job's forward adds to a webhook's commit.
func BenchmarkRecordWebhookForward(b *testing.B) {
	for _, forward := range []bool{false, true} {
		b.Run(fmt.Sprint("forward=", forward), func(b *testing.B) {
			s := openWith(b, filepath.Join(b.TempDir(), "nh.db"), sqlite.Options{Forward: forward})
			var n atomic.Int64
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint("job-", n.Add(1))
					r := report(id, "completed")
					if _, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{Body: []byte(id),
						ReceivedAt: time.Now(), Attempt: 1, Report: r}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// A replay of a whole log of a million ended jobs, each with a forward, in
// writes of replayChunk jobs.
func BenchmarkReplayAll(b *testing.B) {
	ctx := context.Background()
	path, base := queueLog(b, 1_000_000, 100_000, false)
	s := openForwarding(b, path)
	for b.Loop() {
		if n, err := s.ReplayForwards(ctx, base, 0); err != nil || n != 1_000_000 {
			b.Fatal(n, err)
		}
	}
}
