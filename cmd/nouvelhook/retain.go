package main

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
)

// Retention's pace. A batch is one turn of the store's writer, and the pause
// between batches leaves the writer to deliveries, so that a large backlog
// (retention turned on for an old log) drains slowly instead of stalling
// the webhook path.
const (
	retainEvery = time.Minute
	retainBatch = 200
	retainPause = 100 * time.Millisecond
)

// pruner deletes jobs that ended before cutoff, up to batch at a time;
// store.Store is one.
type pruner interface {
	Prune(ctx context.Context, cutoff time.Time, batch int) (deleted int, err error)
}

// retainer deletes jobs that ended longer ago than age (NOUVELHOOK_RETAIN),
// with their deliveries, in small batches on its own goroutine. It is a
// resource: Start it, then Close it before the store.
type retainer struct {
	store pruner
	age   time.Duration
	batch int
	clock reconcile.Clock
	log   zerolog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRetainer(st pruner, age time.Duration, clk reconcile.Clock, log zerolog.Logger) *retainer {
	if clk == nil {
		clk = reconcile.WallClock{}
	}
	return &retainer{store: st, age: age, batch: retainBatch, clock: clk, log: log.With().Str("component", "retain").Logger()}
}

// Start runs a round every retainEvery until Close or ctx's end.
func (r *retainer) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.clock.After(retainEvery):
			}
			r.round(ctx)
		}
	})
}

// Close stops the loop, ending a batch in flight, and waits for it.
func (r *retainer) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

// round prunes batch after batch until what is past the cutoff is gone. An
// error ends the round with one log line; the next round tries again.
func (r *retainer) round(ctx context.Context) {
	cutoff := r.clock.Now().Add(-r.age)
	total := 0
	for {
		n, err := r.store.Prune(ctx, cutoff, r.batch)
		total += n
		if err != nil {
			if ctx.Err() == nil { // not Close ending a batch
				r.log.Error().Err(err).Int("deleted", total).Msg("retention: prune failed; trying again next round")
			}
			return
		}
		if n < r.batch {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(retainPause):
		}
	}
	if total > 0 {
		r.log.Info().Int("deleted", total).Time("ended_before", cutoff).Msg("retention: deleted jobs that ended before the cutoff")
	}
}
