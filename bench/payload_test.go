package bench_test

import (
	"testing"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/store"
)

// TestBody checks the load's bodies are what the benchmark claims: a usable,
// correctly signed job.completed event with two projects, 400 to 600 bytes.
func TestBody(t *testing.T) {
	id := bench.JobID(bench.RunID(), 63, 1<<20)
	body := bench.AppendBody(nil, id)
	if n := len(body); n < 400 || n > 600 {
		t.Errorf("body is %d bytes, want 400 to 600", n)
	}
	sig := string(bench.NewSigner(benchSecret).AppendSignature(nil, body))
	if !handler.NewVerifier([]string{benchSecret}).Verify(body, sig) {
		t.Fatalf("signature %s does not verify", sig)
	}
	if handler.NewVerifier([]string{"other"}).Verify(body, sig) {
		t.Fatal("signature verifies under another secret")
	}
	report, gotID, err := handler.ParseEvent(body)
	if err != nil {
		t.Fatalf("ParseEvent: %v", err)
	}
	if gotID != id || report.Status != store.StatusCompleted || len(report.Projects) != 2 || report.TotalProjects != 2 {
		t.Errorf("got id %s status %s %d projects (total %d), want %s completed 2 (2)",
			gotID, report.Status, len(report.Projects), report.TotalProjects, id)
	}
}

// TestJobIDs checks ids are valid job ids, 24 bytes, and distinct across
// workers, sequence numbers and runs.
func TestJobIDs(t *testing.T) {
	seen := map[string]bool{}
	for _, run := range []string{bench.RunID(), bench.RunID()} {
		for w := range 3 {
			for seq := range uint64(100) {
				id := bench.JobID(run, w, seq)
				if !store.ValidJobID(id) || len(id) != 24 {
					t.Fatalf("JobID(%s, %d, %d) = %q: want a valid 24-byte job id", run, w, seq, id)
				}
				if seen[id] {
					t.Fatalf("JobID(%s, %d, %d) = %q repeats", run, w, seq, id)
				}
				seen[id] = true
			}
		}
		prev := ""
		for n := range uint64(1000) {
			id := bench.OrderedJobID(run, n)
			if !store.ValidJobID(id) || len(id) != 24 || id <= prev || seen[id] {
				t.Fatalf("OrderedJobID(%s, %d) = %q after %q: want a new valid 24-byte id sorting after the last", run, n, id, prev)
			}
			seen[id], prev = true, id
		}
	}
}
