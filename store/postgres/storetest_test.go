package postgres

import (
	"context"
	"testing"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
	"github.com/nouvelhook/nouvelhook/store/storetest"
)

// parkedStore lets the suite see the waiters parked on the feed.
type parkedStore struct{ *Store }

func (p parkedStore) Waiting() int64 { return p.feed.parked.Load() }

// TestConformance runs the suite every backend passes, each subtest on a
// fresh schema.
func TestConformance(t *testing.T) {
	pgtest.BaseURL(t) // skips once, not once per subtest
	storetest.Run(t, func(t *testing.T, o storetest.Options) store.Store {
		s, err := Open(context.Background(), freshSchema(t), Options{Forward: o.Forward})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return parkedStore{s}
	})
}
