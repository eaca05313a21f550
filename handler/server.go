// Package handler builds nouvelhook's two Echo servers: the public one that
// takes Nouvel's webhooks, and the admin one that serves the job log.
package handler

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/store"
)

// Poller is what the admin API needs of the reconciler.
type Poller interface {
	// Ready is nil while the poller can work, or says why it cannot (for
	// example Nouvel answered 401), never including the API key.
	Ready() error
	// Status is the poller's state for /v1/stats, as a JSON-able value.
	Status() any
	// Track adds a job to the log for polling, as store.Track does, with
	// its first poll one interval away.
	Track(ctx context.Context, jobID string) (j store.Job, created bool, err error)
	// Submit sends a generate request through Nouvel and tracks the job,
	// returning the answer for the client. Errors are store.ErrInvalid for
	// a bad body, or the Nouvel client's errors.
	Submit(ctx context.Context, body []byte) (json.RawMessage, error)
}

// Recorder commits verified webhook deliveries; *store.Store is one.
type Recorder interface {
	RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error)
}

// Deps are the servers' dependencies.
type Deps struct {
	// Store is the job log both servers read and write.
	Store *store.Store
	// Recorder is where the webhook path commits deliveries; nil means
	// Store. Only a benchmark baseline sets it.
	Recorder Recorder
	// Verifier checks webhook signatures.
	Verifier *Verifier
	// Metrics counts deliveries; the admin server serves its registry.
	Metrics *Metrics
	// Logger is the root logger; each server adds its component.
	Logger zerolog.Logger
	// WebhookPath is where Nouvel posts, e.g. /webhooks/nouvel.
	WebhookPath string
	// MaxBody is the largest webhook body accepted, in bytes.
	MaxBody int64
	// AdminToken, when set, is the bearer token every admin route but
	// /healthz requires.
	AdminToken string
	// Poller is nil when the reconciler is off.
	Poller Poller
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (d Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func newEcho(d Deps) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Server.ReadHeaderTimeout = 10 * time.Second
	e.Server.IdleTimeout = 2 * time.Minute
	return e
}

// errorHandler answers every error as {"error":"…"}: echo's own errors with
// their status, the store's by kind, and anything else as a logged 500.
func errorHandler(log zerolog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code, msg := http.StatusInternalServerError, "internal error"
		var he *echo.HTTPError
		var nouvelErr *reconcile.APIError
		switch {
		case errors.As(err, &he):
			code = he.Code
			if m, ok := he.Message.(string); ok {
				msg = m
			} else {
				msg = strings.ToLower(http.StatusText(code))
			}
		case errors.As(err, &nouvelErr):
			code, msg = nouvelErr.Status, "Nouvel: "+nouvelErr.Message
			if code < 400 || code > 499 {
				code = http.StatusBadGateway
			}
		case errors.Is(err, reconcile.ErrTransport):
			code, msg = http.StatusBadGateway, err.Error()
		case errors.Is(err, store.ErrNotFound):
			code, msg = http.StatusNotFound, err.Error()
		case errors.Is(err, store.ErrInvalid):
			code, msg = http.StatusBadRequest, strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": ")
		case errors.Is(err, store.ErrUnavailable):
			code, msg = http.StatusServiceUnavailable, "store unavailable"
			log.Error().Err(err).Str("path", c.Path()).Msg("store unavailable")
		case errors.Is(err, context.Canceled):
			// The client went away, or shutdown ended the request: say so,
			// never an empty 200.
			code, msg = http.StatusServiceUnavailable, "request cancelled: the service is shutting down or the client left"
		default:
			log.Error().Err(err).Str("path", c.Path()).Msg("request failed")
		}
		if err := c.JSON(code, map[string]string{"error": msg}); err != nil {
			log.Debug().Err(err).Msg("write error answer")
		}
	}
}

// requireToken refuses every request but /healthz without the bearer token.
func requireToken(token string) echo.MiddlewareFunc {
	want := []byte("Bearer " + token)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Path() == "/healthz" {
				return next(c)
			}
			got := []byte(c.Request().Header.Get(echo.HeaderAuthorization))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="nouvelhook"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "missing or wrong bearer token")
			}
			return next(c)
		}
	}
}
