package nouveltest_test

import (
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

func TestRuntimeJobEndsAtFirstPollAfterItIsDone(t *testing.T) {
	clk := newClock()
	s := start(t, nouveltest.Options{Now: clk.Now})
	id := s.AddJob(nouveltest.JobSpec{Outcome: store.StatusCompleted, Runtime: 30 * time.Second})
	for _, step := range []struct {
		advance time.Duration
		want    store.Status
	}{
		{10 * time.Second, store.StatusRunning},
		{19 * time.Second, store.StatusRunning},
		{5 * time.Second, store.StatusCompleted}, // 34 s: done at 30 s, seen now
		{5 * time.Second, store.StatusCompleted},
	} {
		clk.Add(step.advance)
		if got := poll(t, s, id).Status; got != step.want {
			t.Fatalf("at %s: got %s, want %s", clk.Now().Sub(time.Unix(1_700_000_000, 0)), got, step.want)
		}
	}
	v, _ := s.Job(id)
	start := time.Unix(1_700_000_000, 0)
	if !v.DoneAt.Equal(start.Add(30*time.Second)) || !v.EndedAt.Equal(start.Add(34*time.Second)) {
		t.Fatalf("got DoneAt %s EndedAt %s, want +30s and +34s", v.DoneAt, v.EndedAt)
	}
}
