package handler

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nouvelhook/nouvelhook/handler/console"
)

// NewPublic returns the public server: the webhook path, /healthz and
// /readyz, and nothing else. Its headers are capped at 16 KiB (431 beyond)
// and a whole request must arrive within the read timeout; the connection
// cap is on its listener (see cmd/nouvelhook).
func NewPublic(d Deps) *echo.Echo {
	e := newEcho(d)
	e.Server.MaxHeaderBytes = publicMaxHeaderBytes
	// With a ShedListener under it, the server tells it which connections
	// are still sending a request and which are being answered.
	e.Server.ConnState = shedConnState
	e.Server.ConnContext = shedConnContext
	e.Pre(markBodilessRead)
	// Echo answers OPTIONS on a known path with 204 by itself; the webhook
	// path takes POST and nothing else.
	e.OPTIONS(d.WebhookPath, methodNotAllowed(http.MethodPost))
	e.POST(d.WebhookPath, handleWebhook(d))
	e.Match([]string{http.MethodGet, http.MethodHead}, "/healthz", handleHealthz())
	e.Match([]string{http.MethodGet, http.MethodHead}, "/readyz", handlePublicReadyz(d))
	return e
}

// NewAdmin returns the admin server: the job log API, metrics and health.
func NewAdmin(d Deps) *echo.Echo {
	e := newEcho(d)
	e.Pre(browserGuard(d.AdminHost, d.AdminToken != ""))
	if d.AdminToken != "" {
		e.Use(requireToken(d.AdminToken))
	}
	e.GET("/healthz", handleHealthz())
	e.GET("/readyz", handleReadyz(d))
	// The console: one page for every address it routes itself, and its
	// assets. They hold no data, so requireToken lets them through.
	page := echo.WrapHandler(console.Page())
	e.GET("/", page)
	e.GET("/jobs/:jobId", page)
	e.GET(console.Assets+"*", echo.WrapHandler(console.Static()))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{})))

	v1 := e.Group("/v1")
	v1.GET("/jobs", handleListJobs(d))
	v1.POST("/jobs", handleTrackJob(d))
	v1.GET("/jobs/:jobId", handleGetJob(d))
	v1.GET("/jobs/:jobId/timeline", handleJobTimeline(d))
	v1.GET("/jobs/:jobId/deliveries/:deliveryId/body", handleDeliveryBody(d))
	v1.POST("/generate", handleGenerate(d))
	v1.GET("/events", handleEvents(d))
	v1.GET("/stats", handleStats(d))

	// The forwarding queue; 409 while forwarding is off.
	v1.GET("/forwards", handleListForwards(d))
	v1.POST("/forwards/retry", handleRetryForwards(d))
	v1.POST("/forwards/replay", handleReplayForwards(d))
	v1.POST("/forwards/resume", handleResumeForwarding(d))
	return e
}

// markBodilessRead marks a request without a body as read once its
// headers are, so that its connection is not cut while it is answered.
func markBodilessRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r := c.Request(); r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			markRead(r.Context())
		}
		return next(c)
	}
}

// methodNotAllowed answers 405 with the methods the path takes.
func methodNotAllowed(allow string) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderAllow, allow)
		return echo.NewHTTPError(http.StatusMethodNotAllowed, "method not allowed")
	}
}
