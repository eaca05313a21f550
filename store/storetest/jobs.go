package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func testListJobsPagesNewestFirst(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		status := store.StatusCompleted
		if i%2 == 1 {
			status = "failed"
		}
		deliver(t, s, report(fmt.Sprintf("job-%d", i), status))
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("still paging after %d pages of 3 for 7 jobs: the cursor does not advance", page)
		}
		jobs, next, err := s.ListJobs(ctx, store.Filter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got = append(got, j.JobID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := fmt.Sprint([]string{"job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"})
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	failed, _, err := s.ListJobs(ctx, store.Filter{Limit: 10, Statuses: []store.Status{"failed"}})
	if err != nil || len(failed) != 3 {
		t.Fatalf("status filter: got %d jobs, %v; want 3", len(failed), err)
	}
	for _, since := range []time.Time{time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), time.Now().Add(time.Hour)} {
		if jobs, _, err := s.ListJobs(ctx, store.Filter{Limit: 10, Since: since}); err != nil || len(jobs) != 0 {
			t.Errorf("since %s: got %d jobs, %v; want none", since, len(jobs), err)
		}
	}
	if jobs, _, _ := s.ListJobs(ctx, store.Filter{Limit: 10, Since: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}); len(jobs) != 7 {
		t.Errorf("since year 1000: got %d jobs, want 7", len(jobs))
	}
	for _, f := range []store.Filter{{Limit: 0}, {Limit: 501}, {Limit: 1, Cursor: "x"}, {Limit: 1, Statuses: []store.Status{"done"}}} {
		if _, _, err := s.ListJobs(ctx, f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListJobs(%+v): got %v, want ErrInvalid", f, err)
		}
	}
}

// testListJobsFiltersMatchAScan pages through every filter and compares
// the result with the whole log filtered by hand. The Since bounds are
// the creation times of jobs in the log, and the instants just after them.
func testListJobsFiltersMatchAScan(t *testing.T, s store.Store) {
	ctx := context.Background()
	statuses := []store.Status{"completed", "failed", "partial", "pending", "running"}
	for i := range 40 {
		id := fmt.Sprintf("j%02d", i)
		switch st := statuses[i%len(statuses)]; st {
		case "pending", "running":
			if _, _, err := s.Track(ctx, id, time.Now()); err != nil {
				t.Fatal(err)
			}
			if st == "running" {
				if _, err := s.RecordPoll(ctx, id, store.PollResult{Report: &store.Report{JobID: id, Status: st}, Next: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
		default:
			deliver(t, s, report(id, st))
		}
	}
	all, _, err := s.ListJobs(ctx, store.Filter{Limit: store.MaxLimit})
	if err != nil || len(all) != 40 {
		t.Fatalf("all: got %d jobs, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].CreatedAt.After(all[i-1].CreatedAt) {
			t.Fatalf("createdAt decreases from %s to %s in insertion order", all[i].JobID, all[i-1].JobID)
		}
	}
	at := func(i int) time.Time { return all[len(all)-1-i].CreatedAt } // the i-th job tracked
	PagesMatchAScan(t, s, all, []store.Filter{
		{}, {Statuses: []store.Status{"failed"}}, {Statuses: []store.Status{"pending", "completed", "completed"}},
		{Since: at(15)}, {Since: at(16).Add(time.Nanosecond)},
		{Statuses: []store.Status{"running", "partial"}, Since: at(26)},
		{Since: at(0).Add(-time.Hour)}, {Since: at(39)}, {Since: at(39).Add(time.Nanosecond)},
	})
}

func testInvalidInput(t *testing.T, s store.Store) {
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrInvalid) || store.ErrorCode(err) != store.EINVALID || store.ErrorMessage(err) == "" {
			t.Errorf("%s: got %v (code %q), want ErrInvalid with a message", what, err, store.ErrorCode(err))
		}
	}
	_, _, err := s.Events(ctx, 0, 0)
	check("Events limit 0", err)
	_, _, err = s.Events(ctx, -1, 10)
	check("Events after -1", err)
	_, _, err = s.WaitEvents(ctx, 0, store.MaxLimit+1)
	check("WaitEvents limit too large", err)
	_, _, err = s.WaitFeed(ctx, -1, 10)
	check("WaitFeed after -1", err)
	_, err = s.Prune(ctx, time.Now(), 0)
	check("Prune batch 0", err)
	_, err = s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{}"), Report: report("x", "running")})
	check("RecordWebhook of a running report", err)
	_, err = s.RecordWebhook(ctx, store.WebhookDelivery{Body: []byte("{}"), Report: report("bad id!", "completed")})
	check("RecordWebhook of a bad job id", err)
	if st, err := s.Stats(ctx); err != nil || st.Deliveries != 0 || st.Jobs != 0 {
		t.Errorf("after refused input: got %+v, %v; want nothing stored", st, err)
	}
}

// PagesMatchAScan checks that ListJobs, page by page with a small limit,
// returns for each filter exactly the jobs of all (the whole log, newest
// first) that the filter keeps, in that order. Backend tests with a clock
// of their own use it too.
func PagesMatchAScan(t *testing.T, s store.Store, all []store.Job, filters []store.Filter) {
	t.Helper()
	ctx := context.Background()
	for _, f := range filters {
		var want []string
		for _, j := range all {
			if (len(f.Statuses) == 0 || slices.Contains(f.Statuses, j.Status)) && !j.CreatedAt.Before(f.Since) {
				want = append(want, j.JobID)
			}
		}
		var got []string
		f.Limit = 7
		for page := 0; ; page++ {
			if page > 20 {
				t.Fatalf("%+v: the cursor does not advance", f)
			}
			jobs, next, err := s.ListJobs(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				got = append(got, j.JobID)
			}
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("statuses %v since %s:\ngot  %v\nwant %v", f.Statuses, f.Since.Format(time.RFC3339Nano), got, want)
		}
	}
}
