package handler

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewPublic returns the public server: the webhook path and /healthz, and
// nothing else.
func NewPublic(d Deps) *echo.Echo {
	e := newEcho(d)
	// A body trickled in slowly must not hold a connection, or shutdown, for
	// long; Nouvel gives up after 5 to 10 s itself. The admin server has no
	// such limit because of long-polls and event streams.
	e.Server.ReadTimeout = 30 * time.Second
	e.POST(d.WebhookPath, handleWebhook(d))
	e.Match([]string{http.MethodGet, http.MethodHead}, "/healthz", handleHealthz())
	return e
}

// NewAdmin returns the admin server: the job log API, metrics and health.
func NewAdmin(d Deps) *echo.Echo {
	e := newEcho(d)
	if d.AdminToken != "" {
		e.Use(requireToken(d.AdminToken))
	}
	e.GET("/healthz", handleHealthz())
	e.GET("/readyz", handleReadyz(d))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{})))

	v1 := e.Group("/v1")
	v1.GET("/jobs", handleListJobs(d))
	v1.POST("/jobs", handleTrackJob(d))
	v1.GET("/jobs/:jobId", handleGetJob(d))
	v1.POST("/generate", handleGenerate(d))
	v1.GET("/events", handleEvents(d))
	v1.GET("/stats", handleStats(d))
	return e
}
