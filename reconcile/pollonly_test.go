package reconcile_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// lockedBuffer is a log sink the reconciler's goroutine and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gathered is the value of the unlabelled metric name in reg, and whether
// it is there at all.
func gathered(t *testing.T, reg prometheus.Gatherer, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// In poll-only mode (no NOUVELHOOK_PUBLIC_URL) nobody asked Nouvel for a
// webhook, so a job the poller saw end is never a missed webhook: no flag,
// no count, no warning. With a webhook URL the same jobs are all three.
func TestPollOnlyMissesNoWebhook(t *testing.T) {
	t.Parallel()
	const grace = 30 * time.Second
	tests := []struct {
		name       string
		webhookURL string
		wantMissed bool
	}{
		{"webhook mode", publicHook, true},
		{"poll-only", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs, reg := &lockedBuffer{}, prometheus.NewRegistry()
			f := newFixture(t, 2*time.Minute, nil, func(o *reconcile.Options) {
				o.WebhookURL, o.MissedGrace, o.Registerer = tt.webhookURL, grace, reg
				o.Logger = zerolog.New(logs)
			})
			ids := []string{"job-quiet-1", "job-quiet-2"}
			for _, id := range ids {
				// Nouvel sends no webhook: none was asked for, or it was lost.
				f.Nouvel.AddJob(nouveltest.JobSpec{ID: id, Polls: 1})
			}
			f.track(t, ids...)
			f.runToEnd(t) // past the first poll at 10 s plus the grace, and more sweeps

			for _, id := range ids {
				j := checkEnded(t, f, id)
				if j.Source != store.SourcePoll || j.WebhookMissed != tt.wantMissed {
					t.Errorf("%s: got source %s webhookMissed=%v, want poll %v", id, j.Source, j.WebhookMissed, tt.wantMissed)
				}
			}
			wantCount := 0.0
			if tt.wantMissed {
				wantCount = float64(len(ids))
			}
			if got, ok := gathered(t, reg, "nouvelhook_webhooks_missed_total"); !ok || got != wantCount {
				t.Errorf("nouvelhook_webhooks_missed_total: got %v (present %v), want %v", got, ok, wantCount)
			}
			if got := strings.Contains(logs.String(), "webhooks missed"); got != tt.wantMissed {
				t.Errorf("a \"webhooks missed\" log line: got %v, want %v; log:\n%s", got, tt.wantMissed, logs)
			}
		})
	}
}
