package handler

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nouvelhook/nouvelhook/store"
)

// Delivery outcomes as the metrics label them. The store's outcomes
// (accepted, duplicate, conflict, invalid) are used as they are.
const (
	outcomeBadSignature = "bad_signature"
	outcomeTooLarge     = "too_large"
	outcomeStoreError   = "store_error"
	outcomeUnreadable   = "unreadable"
	outcomeAbandoned    = "abandoned"
)

// Metrics are the service's Prometheus metrics, on a registry of their own.
type Metrics struct {
	// Registry holds every metric below plus Go and process collectors.
	Registry *prometheus.Registry

	deliveries *prometheus.CounterVec
	duplicates prometheus.Counter
	ackLatency prometheus.Histogram
	rejected   atomic.Int64
	inflight   atomic.Int64 // webhook requests being handled
}

// NewMetrics registers the service's metrics on a new registry. jobs, when
// not nil, is read at each scrape for the jobs-by-status gauge.
func NewMetrics(jobs store.Store) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nouvelhook_webhook_deliveries_total",
			Help: "Webhook requests by outcome: accepted, duplicate, conflict, invalid, bad_signature, too_large, unreadable, abandoned, store_error.",
		}, []string{"outcome"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nouvelhook_webhook_duplicates_total",
			Help: "Verified deliveries for a job that had already ended.",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nouvelhook_webhook_ack_seconds",
			Help:    "Time from reading a webhook request to answering it, including the durable commit.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	m.Registry.MustRegister(
		m.deliveries, m.duplicates, m.ackLatency,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nouvelhook_webhook_signature_rejections_total",
			Help: "Webhook requests refused for a missing, malformed or wrong signature.",
		}, func() float64 { return float64(m.rejected.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, o := range []string{string(store.OutcomeAccepted), string(store.OutcomeDuplicate),
		string(store.OutcomeConflict), string(store.OutcomeInvalid), outcomeBadSignature,
		outcomeTooLarge, outcomeUnreadable, outcomeAbandoned, outcomeStoreError} {
		m.deliveries.WithLabelValues(o)
	}
	if jobs != nil {
		m.Registry.MustRegister(jobsCollector{jobs})
	}
	return m
}

func (m *Metrics) observe(outcome string, start time.Time) {
	m.deliveries.WithLabelValues(outcome).Inc()
	switch outcome {
	case outcomeBadSignature:
		m.rejected.Add(1)
	case string(store.OutcomeDuplicate), string(store.OutcomeConflict):
		m.duplicates.Inc()
	}
	m.ackLatency.Observe(time.Since(start).Seconds())
}

// WebhooksInFlight is the number of webhook requests being handled now,
// from their headers read to their answer written. It is one atomic load,
// cheap enough to ask before every forward.
func (m *Metrics) WebhooksInFlight() int64 { return m.inflight.Load() }

// RejectedSignatures is the number of webhook requests refused with 401.
func (m *Metrics) RejectedSignatures() int64 { return m.rejected.Load() }

var jobsDesc = prometheus.NewDesc("nouvelhook_jobs", "Jobs in the log by status.", []string{"status"}, nil)

// jobsCollector reads the jobs-by-status counts from the store at scrape time.
type jobsCollector struct{ store store.Store }

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(jobsDesc, err)
		return
	}
	// Every status is exported, at 0 when no job has it, so that an alert
	// on, say, nouvelhook_jobs{status="expired"} > 0 has a series to watch
	// from the first scrape.
	for _, status := range jobStatuses {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(st.ByStatus[string(status)]), string(status))
	}
	for status, n := range st.ByStatus {
		if !slices.Contains(jobStatuses, store.Status(status)) {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), status)
		}
	}
}

// jobStatuses are the statuses nouvelhook_jobs always has a series for.
var jobStatuses = []store.Status{store.StatusPending, store.StatusRunning, store.StatusCompleted, store.StatusPartial,
	store.StatusFailed, store.StatusCancelled, store.StatusExpired, store.StatusNotFound}
