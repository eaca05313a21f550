package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/storetest"
)

// parkedStore lets the suite see the notifier's parked waiters.
type parkedStore struct{ *Store }

func (p parkedStore) Waiting() int64 { return p.changes.parked.Load() }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), Options{Forward: o.Forward})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return parkedStore{s}
	})
}
