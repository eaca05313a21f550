package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// scrape GETs the admin /metrics and returns the value text of every
// nouvelhook_ series, keyed by name and labels as written.
func (s *testService) scrape() map[string]string {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.Admin+"/metrics", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	code, body := do(s.t, req)
	if code != http.StatusOK {
		s.t.Fatalf("GET /metrics: got %d %s", code, body)
	}
	series := map[string]string{}
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, "nouvelhook_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series[line[:i]] = strings.TrimSpace(line[i+1:])
	}
	return series
}

// Alert rules need their series before anything happened: a fresh service
// exports every poll metric and every job status at 0, with or without a
// reconciler, and the same series in both cases.
func TestMetricsPresentAtZero(t *testing.T) {
	var want []string
	for _, o := range []string{"running", "terminal", "not_found", "rate_limited", "unauthorized",
		"forbidden", "server_error", "transport_error", "invalid"} {
		want = append(want, `nouvelhook_polls_total{outcome="`+o+`"}`)
	}
	for _, st := range []string{"pending", "running", "completed", "partial", "failed", "cancelled", "expired", "not_found"} {
		want = append(want, `nouvelhook_jobs{status="`+st+`"}`)
	}
	want = append(want, "nouvelhook_poll_budget_used", "nouvelhook_poll_budget",
		"nouvelhook_jobs_caught_by_poller_total", "nouvelhook_webhooks_missed_total")

	off := startService(t, nil).scrape()
	for _, name := range want {
		if v, ok := off[name]; !ok || v != "0" {
			t.Errorf("no reconciler: %s: got %q (present %v), want 0", name, v, ok)
		}
	}

	on, _ := startWithNouvel(t, "", 0)
	onSeries := on.scrape()
	for _, name := range want {
		if _, ok := onSeries[name]; !ok {
			t.Errorf("with a reconciler: %s is missing", name)
		}
	}
	if got := onSeries["nouvelhook_poll_budget"]; got != "60" {
		t.Errorf("with a reconciler: nouvelhook_poll_budget: got %q, want 60", got)
	}
	names := func(m map[string]string) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if a, b := names(off), names(onSeries); !slices.Equal(a, b) {
		t.Errorf("series without a reconciler:\n%v\nwith one:\n%v\nwant the same", a, b)
	}
}

func TestMetricsJobsByStatus(t *testing.T) {
	s := startService(t, nil)
	s.mustDeliver("job-m1", "completed")
	s.mustDeliver("job-m2", "completed")
	s.mustDeliver("job-m3", "failed")
	got := s.scrape()
	for status, want := range map[string]string{"completed": "2", "failed": "1", "partial": "0", "expired": "0", "pending": "0"} {
		if v := got[`nouvelhook_jobs{status="`+status+`"}`]; v != want {
			t.Errorf(`nouvelhook_jobs{status=%q}: got %q, want %s`, status, v, want)
		}
	}
}
