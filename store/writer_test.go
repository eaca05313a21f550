package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestOneFailingWriteDoesNotSinkItsBatch(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	insert := func(id string) func(*txn) error {
		return func(t *txn) error {
			_, err := t.tx.ExecContext(t.ctx, `INSERT INTO jobs (job_id, status, created_at, updated_at)
				VALUES (?, 'pending', 0, 0)`, id)
			return err
		}
	}
	batch := []*op{
		{fn: insert("good-1"), done: make(chan error, 1)},
		{fn: func(*txn) error { return errors.New("this write fails") }, done: make(chan error, 1)},
		{fn: insert("good-2"), done: make(chan error, 1)},
	}
	s.commit(batch)
	for i, want := range []bool{true, false, true} {
		if err := <-batch[i].done; (err == nil) != want {
			t.Errorf("op %d: got err %v, want success %v", i, err, want)
		} else if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("op %d: got %v, want ErrUnavailable", i, err)
		}
	}
	for _, id := range []string{"good-1", "good-2"} {
		if _, err := s.Job(ctx, id); err != nil {
			t.Errorf("Job(%s): %v; a failing write in its batch must not undo it", id, err)
		}
	}
}
