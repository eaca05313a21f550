// Package handler builds nouvelhook's two Echo servers: the public one that
// takes Nouvel's webhooks, and the admin one that serves the job log.
package handler

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	stdlog "log"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/handler/console"
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

// Recorder commits verified webhook deliveries; store.Store is one.
type Recorder interface {
	RecordWebhook(ctx context.Context, d store.WebhookDelivery) (store.Outcome, error)
}

// Deps are the servers' dependencies.
type Deps struct {
	// Store is the job log both servers read and write.
	Store store.Store
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
	// Forwarder is nil when forwarding is off (NOUVELHOOK_FORWARD_URL is
	// unset); the forwarding routes then answer 409.
	Forwarder Forwarder
	// AdminHost is the host part of the admin listener's configured
	// address; without a token the admin API also answers to it as Host.
	AdminHost string
	// ReadTimeout bounds reading one request, headers and body, on either
	// listener; 0 means DefaultReadTimeout. Tests shorten it.
	ReadTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultReadTimeout is how long either listener waits for a whole request,
// headers and body. Nouvel gives up on a delivery after 5 to 10 s itself.
const DefaultReadTimeout = 10 * time.Second

// publicMaxHeaderBytes caps the request line and headers on the public
// listener at 16 KiB: net/http allows MaxHeaderBytes plus 4 KiB of buffer
// before it answers 431.
const publicMaxHeaderBytes = 16<<10 - 4<<10

func (d Deps) readTimeout() time.Duration {
	if d.ReadTimeout > 0 {
		return d.ReadTimeout
	}
	return DefaultReadTimeout
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
	// A read deadline covers the request only: net/http lifts it once the
	// body has been read, so long-polls and event streams, which are
	// about the response, are not cut. There is no WriteTimeout for that
	// reason.
	e.Server.ReadHeaderTimeout = d.readTimeout()
	e.Server.ReadTimeout = d.readTimeout()
	e.Server.IdleTimeout = 2 * time.Minute
	e.Server.ErrorLog = NewErrorLog(d.Logger)
	return e
}

// NewErrorLog returns a log.Logger for http.Server.ErrorLog that writes
// each of net/http's messages (accept errors such as EMFILE, panics) as one
// structured error line instead of plain text on stderr.
func NewErrorLog(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(errorLogWriter{log.With().Str("component", "http").Logger()}, "", 0)
}

type errorLogWriter struct{ log zerolog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.log.Error().Msg(strings.TrimSpace(strings.TrimPrefix(string(p), "http: ")))
	return len(p), nil
}

// requireToken refuses every request but /healthz without the bearer token.
func requireToken(token string) echo.MiddlewareFunc {
	want := []byte("Bearer " + token)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if tokenFree(c.Path()) {
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

// tokenFree reports whether the route at path is served without the admin
// token: /healthz, and the console's page and assets, which hold no data.
func tokenFree(path string) bool {
	switch path {
	case "/healthz", "/", "/jobs/:jobId", console.Assets + "*":
		return true
	}
	return false
}
