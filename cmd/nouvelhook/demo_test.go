package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The demo runs end to end: six jobs, each ending once and caught by the
// webhook or the poller, each forwarded to the stand-in app, which fails
// the first attempt, and retried until the app accepts it.
func TestDemoShowsEveryJobEndingOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo's real-time schedule (about 20 s); skipped with -short")
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"nouvelhook", "demo"}, mapEnv(nil), nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	m := regexp.MustCompile(`All 6 jobs ended once each: (\d+) by webhook, (\d+) by the poller`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	byWebhook, _ := strconv.Atoi(m[1])
	byPoller, _ := strconv.Atoi(m[2])
	if got := strings.Count(out, "poller (webhook dropped)"); got != byPoller {
		t.Errorf("%d rows caught by the poller, summary says %d", got, byPoller)
	}
	if got := strings.Count(out, "  webhook\n"); got != byWebhook {
		t.Errorf("%d rows caught by webhook, summary says %d", got, byWebhook)
	}
	ids := regexp.MustCompile(`(?m)^  (\S+)  \((webhook|poll-only) mode\)$`).FindAllStringSubmatch(out, -1)
	if len(ids) != 6 {
		t.Fatalf("got %d submitted jobs, want 6:\n%s", len(ids), out)
	}
	for _, id := range ids {
		if n := strings.Count(out, id[1]); n != 4 {
			t.Errorf("job %s appears %d times, want 4 (submitted, ended, its forward failed, retried)", id[1], n)
		}
		attempt := func(n int, answer string) *regexp.Regexp {
			return regexp.MustCompile(`(?m)^  \d\d:\d\d:\d\d  ` + regexp.QuoteMeta(id[1]) +
				` +→ app: job\.completed \(\w+\), attempt ` + strconv.Itoa(n) + `: ` + answer)
		}
		if !attempt(1, "500").MatchString(out) || !attempt(2, "200, signature checked, accepted").MatchString(out) {
			t.Errorf("job %s: want its forward's attempt 1 answered 500 and attempt 2 accepted:\n%s", id[1], out)
		}
	}
	if !strings.Contains(out, "All 6 jobs forwarded to the app: 6 attempts failed and were retried, 6 accepted (GET /v1/stats: 6 delivered).") {
		t.Errorf("no forwarding summary, or not every forward retried once and delivered:\n%s", out)
	}
}
