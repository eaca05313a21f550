// Package storetest is the conformance suite every store.Store backend
// runs: the guarantees the handlers and the reconciler rely on, checked
// through the interface alone, so one suite holds SQLite and Postgres to the
// same behaviour.
//
// The suite uses the wall clock: times it passes to DuePolls, ExpireJobs,
// MarkMissedWebhooks and Prune are taken from time.Now around the writes,
// so a backend under test must use the real clock.
package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Waiting is an optional hook: a store under test that implements it says
// how many of its callers are blocked in WaitJob, WaitEvents or WaitFeed
// until a commit wakes them. The wake-up tests then commit only once the
// waiter is parked, so they prove a wake-up rather than a late first read.
// Without it they still check the answers.
type Waiting interface {
	Waiting() int64
}

// Options say how the suite wants a store opened for one subtest.
type Options struct {
	// Forward opens it with forwarding on (the backend's Options.Forward):
	// the transaction that ends a job queues its forward.
	Forward bool
}

// Run runs every test of the suite as a subtest of t. open returns a new,
// empty store for one subtest, opened as o says; the suite closes it at the
// end of the subtest (Close must be safe to call twice, if open also
// registers it).
func Run(t *testing.T, open func(t *testing.T, o Options) store.Store) {
	on := Options{Forward: true}
	for _, tt := range []struct {
		name string
		opts Options
		fn   func(t *testing.T, s store.Store)
	}{
		{"FirstTerminalReportWins", Options{}, testFirstTerminalReportWins},
		{"InvalidDeliveryKeptButNoJob", Options{}, testInvalidDeliveryKeptButNoJob},
		{"IdenticalReplayStoredOnce", Options{}, testIdenticalReplayStoredOnce},
		{"JobWithDeliveriesListsTheLast100", Options{}, testJobWithDeliveriesListsTheLast100},
		{"TrackThenWebhookEndsTrackedJob", Options{}, testTrackThenWebhookEndsTrackedJob},
		{"JobNotFound", Options{}, testJobNotFound},
		{"ListJobsPagesNewestFirst", Options{}, testListJobsPagesNewestFirst},
		{"ListJobsFiltersMatchAScan", Options{}, testListJobsFiltersMatchAScan},
		{"EventsOrderedAndWaitWakes", Options{}, testEventsOrderedAndWaitWakes},
		{"ConcurrentDeliveriesAllStoredWithContiguousSeq", Options{}, testConcurrentDeliveriesAllStored},
		{"ConcurrentEndsOfTheSameJobs", Options{}, testConcurrentEndsOfTheSameJobs},
		{"WaitEventsAndWaitFeedWake", Options{}, testWaitEventsAndWaitFeedWake},
		{"WaitEventsExactlyOnceInOrder", Options{}, testWaitEventsExactlyOnceInOrder},
		{"WaitJobAnswersAtContextEnd", Options{}, testWaitJobAnswersAtContextEnd},
		{"SchedulePersistsThroughPolls", Options{}, testSchedulePersistsThroughPolls},
		{"NextPollAtShownUntilTheEnd", Options{}, testNextPollAtShownUntilTheEnd},
		{"StalePollDoesNotReopenAnEndedJob", Options{}, testStalePollDoesNotReopenAnEndedJob},
		{"PollEndsAJobOnce", Options{}, testPollEndsAJobOnce},
		{"ExpireAndMissedWebhooks", Options{}, testExpireAndMissedWebhooks},
		{"StatsCounts", Options{}, testStatsCounts},
		{"PruneNeverReusesSeq", Options{}, testPruneNeverReusesSeq},
		{"InvalidInput", Options{}, testInvalidInput},
		{"CloseRefusesWrites", Options{}, testCloseRefusesWrites},
		{"ForwardQueuedOnceWhenAJobEnds", on, testForwardQueuedOnceWhenAJobEnds},
		{"ForwardQueuedOnceUnderRacingEnds", on, testForwardQueuedOnceUnderRacingEnds},
		{"ForwardOffQueuesOnlyOnReplayOrRetry", Options{}, testForwardOffQueuesOnlyOnReplayOrRetry},
		{"ForwardClaimLeaseAndToken", on, testForwardClaimLeaseAndToken},
		{"ForwardClaimPassesABacklogInRetry", on, testForwardClaimPassesABacklogInRetry},
		{"ForwardResultsAndAttempts", on, testForwardResultsAndAttempts},
		{"ForwardPauseAndResume", on, testForwardPauseAndResume},
		{"ForwardOrderedClaims", on, testForwardOrderedClaims},
		{"ForwardRetryAllOrNothing", on, testForwardRetryAllOrNothing},
		{"ForwardReplay", on, testForwardReplay},
		{"ForwardStats", on, testForwardStats},
		{"ForwardListPages", on, testForwardListPages},
		{"ForwardShownInEveryJobRead", on, testForwardShownInEveryJobRead},
		{"TimelinePolls", on, testTimelinePolls},
		{"TimelineDeliveries", on, testTimelineDeliveries},
		{"PruneRemovesForwardsAndTimeline", on, testPruneRemovesForwardsAndTimeline},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.opts)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

func report(id string, status store.Status) *store.Report {
	return &store.Report{JobID: id, Status: status, TotalProjects: 2, CompletedProjects: 2,
		Projects: []store.Project{{ProjectID: "p1", Title: "t", Status: "completed", VideoURL: "https://v/1.mp4"}}}
}

// deliver records r as a delivery whose body is r's JSON, so equal reports
// are equal bytes, as they are from Nouvel.
func deliver(t testing.TB, s store.Store, r *store.Report) store.Outcome {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.RecordWebhook(context.Background(), store.WebhookDelivery{
		Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: r})
	if err != nil {
		t.Errorf("RecordWebhook(%s): %v", r.JobID, err)
	}
	return out
}

// awaitWaiting returns once n callers are parked, when s can say so.
func awaitWaiting(t *testing.T, s store.Store, n int64) {
	t.Helper()
	w, ok := s.(Waiting)
	if !ok {
		return
	}
	deadline := time.Now().Add(time.Minute)
	for w.Waiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiters parked: got %d, want %d", w.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
