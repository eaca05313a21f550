package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

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
		if n := strings.Count(out, id[1]); n != 2 {
			t.Errorf("job %s appears %d times, want twice (submitted, ended)", id[1], n)
		}
	}
}
