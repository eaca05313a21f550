package reconcile

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type reconcileMetrics struct {
	polls  *prometheus.CounterVec
	caught prometheus.Counter
	missed prometheus.Counter
}

func newReconcileMetrics(reg prometheus.Registerer, used func() int, leading func() bool, budget int) reconcileMetrics {
	m := reconcileMetrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nouvelhook_polls_total",
			Help: "Polls of Nouvel's jobs endpoint by outcome.",
		}, []string{"outcome"}),
		caught: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nouvelhook_jobs_caught_by_poller_total",
			Help: "Jobs whose end the poller learned before any webhook.",
		}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nouvelhook_webhooks_missed_total",
			Help: "Jobs the poller saw end with no webhook within NOUVELHOOK_MISSED_GRACE.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.polls, m.caught, m.missed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nouvelhook_poll_budget_used",
			Help: "Nouvel requests polling sent in the last minute.",
		}, func() float64 { return float64(used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nouvelhook_poll_budget",
			Help: "Nouvel requests per minute polling may send (NOUVELHOOK_POLL_BUDGET).",
		}, func() float64 { return float64(budget) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nouvelhook_poller_leader",
			Help: "1 while this replica is the one that polls Nouvel, 0 while it stands by.",
		}, func() float64 {
			if leading() {
				return 1
			}
			return 0
		}),
	)
	for _, o := range []string{"running", "terminal", "not_found", "rate_limited", "unauthorized",
		"forbidden", "server_error", "transport_error", "invalid"} {
		m.polls.WithLabelValues(o)
	}
	return m
}

// RegisterIdleMetrics registers the reconciler's metrics on reg, every one
// at 0, for a service that runs no reconciler (no NOUVEL_API_KEY), so that
// alert rules and dashboards find the same series either way. The budget
// reads 0 too: polling may send nothing. It panics, as MustRegister does, if
// reg already holds them.
func RegisterIdleMetrics(reg prometheus.Registerer) {
	newReconcileMetrics(reg, func() int { return 0 }, func() bool { return false }, 0)
}

// pollLabel names a poll's outcome for the metrics; "running" for a
// success, which the caller turns into "terminal" when the job ended.
func pollLabel(err error) string {
	for _, l := range []struct {
		err   error
		label string
	}{
		{ErrNotFound, "not_found"}, {ErrRateLimited, "rate_limited"}, {ErrUnauthorized, "unauthorized"},
		{ErrForbidden, "forbidden"}, {ErrServer, "server_error"}, {ErrInvalid, "invalid"},
	} {
		if errors.Is(err, l.err) {
			return l.label
		}
	}
	if err != nil {
		return "transport_error"
	}
	return "running"
}
