package handler

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// timeline is GET /v1/jobs/{id}/timeline's answer.
type timeline struct {
	Job struct {
		store.Job
		Deliveries      []store.Delivery `json:"deliveries"`
		DeliveriesTotal int              `json:"deliveriesTotal"`
	} `json:"job"`
	Polls           []store.PollRecord     `json:"polls"`
	ForwardAttempts []store.ForwardAttempt `json:"forwardAttempts"`
}

func TestJobTimeline(t *testing.T) {
	st := openForwardStore(t)
	ctx := context.Background()
	const id = "job-timeline"
	if _, _, err := st.Track(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordPoll(ctx, id, store.PollResult{
		Report: &store.Report{JobID: id, Status: store.StatusRunning, TotalProjects: 1, Progress: 40},
		Next:   time.Now().Add(time.Minute),
	}); err != nil {
		t.Fatal(err)
	}
	first := endJob(t, st, id, store.StatusCompleted)
	second := bytes.Replace(first, []byte(`"completed","totalProjects"`), []byte(`"failed","totalProjects"`), 1)
	deliver(t, st, second) // a conflicting report, kept and counted
	finishNext(t, st, id, store.ForwardResult{Status: 502, Err: "app answered 502", State: store.ForwardPending,
		Took: 1500 * time.Millisecond, Next: time.Now().Add(time.Hour)})

	a := startAdmin(t, Deps{Store: st, Forwarder: &storeForwarder{st: st}})
	var tl timeline
	a.json(http.MethodGet, "/v1/jobs/"+id+"/timeline", nil, http.StatusOK, &tl)
	j := tl.Job
	if j.JobID != id || j.Status != store.StatusCompleted || j.Forward == nil || j.Forward.State != store.ForwardPending ||
		j.Forward.Attempts != 1 || j.Forward.LastStatus != 502 {
		t.Errorf("timeline job: got %+v with forward %+v, want %s completed, its forward pending after one 502", j.Job, j.Forward, id)
	}
	if len(j.Deliveries) != 2 || j.DeliveriesTotal != 2 ||
		j.Deliveries[0].Outcome != store.OutcomeAccepted || j.Deliveries[1].Outcome != store.OutcomeConflict ||
		j.Deliveries[0].ID == 0 || j.Deliveries[0].ID == j.Deliveries[1].ID {
		t.Errorf("timeline deliveries: got %+v (total %d), want the accepted one then the conflict, with ids", j.Deliveries, j.DeliveriesTotal)
	}
	if len(tl.Polls) != 1 || tl.Polls[0].Status != store.StatusRunning || tl.Polls[0].Ended || tl.Polls[0].At.IsZero() {
		t.Errorf("timeline polls: got %+v, want one running poll that did not end the job", tl.Polls)
	}
	if len(tl.ForwardAttempts) != 1 {
		t.Fatalf("timeline attempts: got %+v, want one", tl.ForwardAttempts)
	}
	if fa := tl.ForwardAttempts[0]; fa.Attempt != 1 || fa.Status != 502 || fa.Error != "app answered 502" ||
		fa.State != store.ForwardPending || fa.TookMs != 1500 {
		t.Errorf("timeline attempt: got %+v, want attempt 1, 502, its error, pending, 1500 ms", fa)
	}

	// The body of each delivery, byte for byte, never as something a
	// browser would render.
	for i, want := range [][]byte{first, second} {
		path := "/v1/jobs/" + id + "/deliveries/" + strconv.FormatInt(j.Deliveries[i].ID, 10) + "/body"
		code, h, b := a.do(http.MethodGet, path, nil)
		if code != http.StatusOK || !bytes.Equal(b, want) {
			t.Errorf("GET %s: got %d %q, want 200 %q", path, code, b, want)
		}
		if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("GET %s: Content-Type %q, want application/octet-stream", path, ct)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", path, h.Get("X-Content-Type-Options"))
		}
	}

	// Another job's delivery is not this job's.
	endJob(t, st, "job-other", store.StatusCompleted)
	var other timeline
	a.json(http.MethodGet, "/v1/jobs/job-other/timeline", nil, http.StatusOK, &other)
	if len(other.Polls) != 0 || other.Polls == nil || other.ForwardAttempts == nil || len(other.Job.Deliveries) != 1 {
		t.Errorf("other job's timeline: got %+v, want its one delivery and empty lists, not null", other)
	}
	otherID := strconv.FormatInt(other.Job.Deliveries[0].ID, 10)
	a.wantError(http.MethodGet, "/v1/jobs/"+id+"/deliveries/"+otherID+"/body", nil, http.StatusNotFound, "")
	a.wantError(http.MethodGet, "/v1/jobs/"+id+"/deliveries/999999/body", nil, http.StatusNotFound, "")
	a.wantError(http.MethodGet, "/v1/jobs/"+id+"/deliveries/abc/body", nil, http.StatusBadRequest, `deliveryId "abc"`)
	a.wantError(http.MethodGet, "/v1/jobs/"+id+"/deliveries/0/body", nil, http.StatusBadRequest, `deliveryId "0"`)
	a.wantError(http.MethodGet, "/v1/jobs/job-nope/deliveries/1/body", nil, http.StatusNotFound, "")
	a.wantError(http.MethodGet, "/v1/jobs/job%20x/deliveries/1/body", nil, http.StatusBadRequest, "jobId must be")
	a.wantError(http.MethodGet, "/v1/jobs/job-nope/timeline", nil, http.StatusNotFound, "")
	a.wantError(http.MethodGet, "/v1/jobs/job%20x/timeline", nil, http.StatusBadRequest, "jobId must be")
}

// The timeline answers with forwarding off too: the console shows polls and
// deliveries whatever the forwarder does.
func TestJobTimelineWithForwardingOff(t *testing.T) {
	st := openStore(t)
	body := endJob(t, st, "job-1", store.StatusCompleted)
	a := startAdmin(t, Deps{Store: st})
	var tl timeline
	a.json(http.MethodGet, "/v1/jobs/job-1/timeline", nil, http.StatusOK, &tl)
	if tl.Job.Forward != nil || len(tl.ForwardAttempts) != 0 || len(tl.Job.Deliveries) != 1 {
		t.Fatalf("got %+v, want no forward, no attempts, one delivery", tl)
	}
	_, _, b := a.do(http.MethodGet, "/v1/jobs/job-1/deliveries/"+strconv.FormatInt(tl.Job.Deliveries[0].ID, 10)+"/body", nil)
	if !bytes.Equal(b, body) {
		t.Errorf("body: got %q, want %q", b, body)
	}
}
