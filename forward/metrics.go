package forward

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nouvelhook/nouvelhook/store"
)

// outcomes are the values of nouvelhook_forwards_total's outcome label.
var outcomes = []string{"delivered", "retry", "failed", "paused"}

type metrics struct {
	outcomes *prometheus.CounterVec
	duration prometheus.Histogram
}

// newMetrics makes the forwarder's metrics and registers them on reg, if
// set; the queue's gauges read stats at each scrape.
func newMetrics(reg prometheus.Registerer, stats func(context.Context) (store.ForwardStats, error), now func() time.Time) metrics {
	m := metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nouvelhook_forwards_total",
			Help: "Attempts to forward a job to the app, by what came of them: delivered, retry, failed (no step left) or paused (410).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nouvelhook_forward_attempt_duration_seconds",
			Help:    "How long attempts to forward a job to the app took, answered or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60},
		}),
	}
	for _, o := range outcomes {
		m.outcomes.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.duration, &queueCollector{stats: stats, now: now})
	}
	return m
}

// RegisterIdleMetrics registers the forwarder's metrics on reg, every one
// at 0, for a service that forwards nothing (no NOUVELHOOK_FORWARD_URL), so
// that alert rules and dashboards find the same series either way. It
// panics, as MustRegister does, if reg already holds them.
func RegisterIdleMetrics(reg prometheus.Registerer) {
	newMetrics(reg, func(context.Context) (store.ForwardStats, error) { return store.ForwardStats{}, nil }, time.Now)
}

var (
	depthDesc = prometheus.NewDesc("nouvelhook_forward_queue_depth",
		"Forwards not yet delivered nor failed: pending and paused.", nil, nil)
	oldestDesc = prometheus.NewDesc("nouvelhook_forward_oldest_pending_age_seconds",
		"How long the longest-waiting pending or paused forward has been queued; 0 when none waits.", nil, nil)
	pausedDesc = prometheus.NewDesc("nouvelhook_forwarding_paused",
		"1 while forwarding is paused after the app answered 410 Gone, else 0.", nil, nil)
)

// queueCollector reads the queue once per scrape for its three gauges.
type queueCollector struct {
	stats func(context.Context) (store.ForwardStats, error)
	now   func() time.Time
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- oldestDesc
	ch <- pausedDesc
}

// Collect implements prometheus.Collector. When the store cannot be read,
// the gauges are left out of the scrape rather than shown as 0.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		return
	}
	var age, paused float64
	if st.OldestPending != nil {
		age = max(c.now().Sub(*st.OldestPending).Seconds(), 0)
	}
	if st.Paused {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(st.Depth))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, paused)
}
