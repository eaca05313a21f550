package reconcile_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// jobIDs returns n ids, alternating UUIDs and cuid-like ids.
func jobIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		if i%2 == 0 {
			ids[i] = fmt.Sprintf("3f2b8c1e-9d4a-4c7b-8e21-%012d", i)
		} else {
			ids[i] = fmt.Sprintf("clx8k9v2t%04dqz8x7r4e5w6m", i)
		}
	}
	return ids
}

func TestDroppedWebhooksAreReconciled(t *testing.T) {
	f := newFixture(t, 30*time.Minute, func(o *nouveltest.Options) { o.DropRate = 0.4 }, nil)
	outcomes := []store.Status{"completed", "partial", "failed", "cancelled", "completed"}
	ids := jobIDs(30)
	for i, id := range ids {
		f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Outcome: outcomes[i%len(outcomes)], Polls: 1 + i%5,
			Projects: 1 + i%3, WebhookURL: publicHook})
	}
	f.track(t, ids...)
	f.runToEnd(t)

	dropped, seqs := 0, map[int64]bool{}
	for _, id := range ids {
		truth, _ := f.Nouvel.Job(id)
		j := f.job(t, id)
		if !j.Terminal || j.Status != truth.Outcome || j.TotalProjects != truth.TotalProjects ||
			j.CompletedProjects != truth.CompletedProjects || j.FailedProjects != truth.FailedProjects {
			t.Errorf("%s: got %s terminal=%v %d/%d/%d, want %s %d/%d/%d", id, j.Status, j.Terminal,
				j.TotalProjects, j.CompletedProjects, j.FailedProjects,
				truth.Outcome, truth.TotalProjects, truth.CompletedProjects, truth.FailedProjects)
		}
		if !reflect.DeepEqual(j.Projects, truth.Projects) {
			t.Errorf("%s: got projects %+v, want %+v", id, j.Projects, truth.Projects)
		}
		wantSource := "webhook"
		if truth.WebhookDropped {
			wantSource = "poll"
			dropped++
		}
		if j.Source != wantSource || j.WebhookMissed != truth.WebhookDropped {
			t.Errorf("%s: got source=%s webhookMissed=%v, want %s %v", id, j.Source, j.WebhookMissed, wantSource, truth.WebhookDropped)
		}
		if truth.Polls != truth.PollsNeeded || j.PollCount != truth.PollsNeeded {
			t.Errorf("%s: polled %d times (log says %d), want exactly %d: a terminal job is never polled again",
				id, truth.Polls, j.PollCount, truth.PollsNeeded)
		}
		if seqs[j.Seq] {
			t.Errorf("%s: seq %d used twice", id, j.Seq)
		}
		seqs[j.Seq] = true
	}
	if dropped < 6 || dropped > 18 {
		t.Fatalf("stand-in dropped %d of 30 webhooks; want about 40%%", dropped)
	}
}
