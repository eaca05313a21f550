package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// queueBacklog writes n ended jobs with their forwards, pending and due at
// t0, straight in SQL; the first waiting of them wait out a retry due an
// hour later.
func queueBacklog(b testing.TB, s *Store, n, waiting int) {
	b.Helper()
	ctx := context.Background()
	at := t0.UnixNano()
	if _, err := s.pool.Exec(ctx, `WITH j AS (INSERT INTO jobs (job_id, status, terminal, source, created_at,
		updated_at, terminal_at) SELECT 'job-' || i, 'completed', true, 'webhook', $1, $1, $1
		FROM generate_series(1, $2) AS i RETURNING id)
		INSERT INTO feed (job_row, seq) SELECT id, row_number() OVER (ORDER BY id) FROM j`, at, n); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE feed_counter SET seq = $1`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO forwards (job_row, seq, state, next_attempt_at, enqueued_at)
		SELECT job_row, seq, 'pending', CASE WHEN seq <= $2 THEN $1::bigint + 3600e9::bigint ELSE $1 END, $1 FROM feed`,
		at, waiting); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE jobs; ANALYZE feed; ANALYZE forwards`); err != nil {
		b.Fatal(err)
	}
}

// One claim and its result, the forwarder's writes per forward, with a
// backlog of 100,000 due; and with the first 90,000 of them waiting out a
// retry, so that a claim must find the due ones after them.
func BenchmarkClaimAndFinish(b *testing.B) {
	for _, waiting := range []int{0, 90_000} {
		b.Run(fmt.Sprint("waiting=", waiting), func(b *testing.B) {
			ctx := context.Background()
			s := openTest(b, freshSchema(b), Options{Forward: true})
			queueBacklog(b, s, 100_000, waiting)
			now := t0.Add(time.Minute)
			for b.Loop() {
				c, err := s.ClaimForwards(ctx, now, 1, time.Minute, false)
				if err != nil || len(c) != 1 {
					b.Fatal(len(c), err)
				}
				if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: now, Status: 200,
					State: store.ForwardDelivered}); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
