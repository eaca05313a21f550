package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// TestReconcileSurvivesSIGKILL kills the built binary in the middle of its
// polling schedule; the restarted binary must pick the schedule up from the
// database and reconcile every tracked job, whose webhooks are all lost.
func TestReconcileSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	bin := buildNouvelhook(t)
	db := filepath.Join(t.TempDir(), "restart.db")
	nouvel := nouveltest.New(nouveltest.Options{APIKey: testAPIKey, WebhookSecret: testSecret, DropRate: 1})
	t.Cleanup(nouvel.Close)
	env := []string{"NOUVEL_API_KEY=" + testAPIKey, "NOUVEL_API_BASE_URL=" + nouvel.URL(),
		"NOUVELHOOK_POLL_INTERVAL=1s", "NOUVELHOOK_POLL_BUDGET=60"}

	outcomes := []store.Status{store.StatusCompleted, store.StatusFailed, store.StatusPartial, store.StatusCompleted}
	ids := []string{"3f2b8c1e-9d4a-4c7b-8e21-6a0b5c4d3e2f", "clx8k9v2t0001qz8x7r4e5w6m",
		"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "clx8k9v2t0002qz8x7r4e5w6m"}
	c := startChild(t, bin, db, env...)
	for i, id := range ids {
		nouvel.AddJob(nouveltest.JobSpec{ID: id, Outcome: outcomes[i], Polls: 3, WebhookURL: "https://hooks.example.com/webhooks/nouvel"})
		if code, body := postJSON(t, c.admin+"/v1/jobs", `{"jobId":"`+id+`"}`); code != 201 {
			t.Fatalf("track %s: got %d %s", id, code, body)
		}
	}
	// Mid-schedule: some polls answered, no job able to end yet.
	for deadline := time.Now().Add(60 * time.Second); len(nouvel.Requests()) < len(ids)+1; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d polls within 60s:\n%s", len(nouvel.Requests()), logTail(c.log))
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.proc.Process.Kill()
	c.wait(30 * time.Second)
	killedAt := len(nouvel.Requests())

	c = startChild(t, bin, db, env...)
	for i, id := range ids {
		var j store.Job
		c.adminGet(t, "/v1/jobs/"+id+"?wait=60s", &j)
		truth, _ := nouvel.Job(id)
		if !j.Terminal || j.Status != outcomes[i] || j.Source != store.SourcePoll || j.CompletedProjects != truth.CompletedProjects {
			t.Errorf("%s after restart: got %s terminal=%v source=%s completed=%d, want %s by poll with %d completed",
				id, j.Status, j.Terminal, j.Source, j.CompletedProjects, outcomes[i], truth.CompletedProjects)
		}
		// A poll answered just before the kill may be asked again, but the
		// schedule itself resumes: no job starts over.
		if truth.Polls > truth.PollsNeeded+1 {
			t.Errorf("%s: polled %d times, want at most %d", id, truth.Polls, truth.PollsNeeded+1)
		}
	}
	t.Logf("killed after %d polls; %d polls in all for %d jobs needing 3 each", killedAt, len(nouvel.Requests()), len(ids))
}
