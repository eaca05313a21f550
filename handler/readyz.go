package handler

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// readyTTL is how long a store check answers /readyz. Each check is a
// write, and the public /readyz is open to anyone: a flood of probes must
// cost at most one write per listener per readyTTL. A commit that fails in
// the meantime ends a kept "ready" at once, since the store knows that
// without writing.
const readyTTL = time.Second

// storeCheck remembers the last store check for readyTTL.
type storeCheck struct {
	now   func() time.Time
	check func(context.Context) error
	// failed says, without writing, whether a commit has failed.
	failed func() error

	mu  sync.Mutex
	at  time.Time
	err error
	ok  bool // at and err hold a result
}

func newStoreCheck(d Deps) *storeCheck {
	// Closures, not method values: those would need d.Store set now, and
	// servers built for tests that never ask for readiness leave it nil.
	return &storeCheck{now: d.now,
		check:  func(ctx context.Context) error { return d.Store.Ping(ctx) },
		failed: func() error { return d.Store.Failed() }}
}

// ready returns the store check's result, checking again only when the
// last result is older than readyTTL. Callers that arrive during a check
// wait for it rather than starting their own.
func (s *storeCheck) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	fresh := s.ok && now.Sub(s.at) < readyTTL && !now.Before(s.at)
	if fresh && (s.err != nil || s.failed() == nil) {
		return s.err
	}
	err := s.check(ctx)
	if ctx.Err() != nil {
		return err // this caller gave up; the next one checks again
	}
	s.at, s.err, s.ok = s.now(), err, true
	return err
}

// handleReadyz is ready when the store takes deliveries, the reconciler, if
// on, is not locked out, and forwarding, if on, is not paused.
func handleReadyz(d Deps) echo.HandlerFunc {
	check := newStoreCheck(d)
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		reason := ""
		if err := check.ready(ctx); err != nil {
			reason = "store is not writable: " + err.Error()
		} else if d.Poller != nil {
			if err := d.Poller.Ready(); err != nil {
				reason = "reconciler: " + err.Error()
			}
		}
		if reason == "" && d.Forwarder != nil {
			if err := d.Forwarder.Ready(); err != nil {
				reason = err.Error() // it says it is about forwarding
			}
		}
		if reason != "" {
			return c.JSON(http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		}
		return c.JSON(http.StatusOK, map[string]any{"ready": true})
	}
}

// handlePublicReadyz is the public listener's readiness: whether the store
// takes deliveries, as {"ready":bool} and nothing more, since anyone can
// ask. The reconciler and the forwarder do not count: webhooks are what this listener is
// for, so it is what a Kubernetes readiness probe should use.
func handlePublicReadyz(d Deps) echo.HandlerFunc {
	check := newStoreCheck(d)
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if err := check.ready(ctx); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]bool{"ready": false})
		}
		return c.JSON(http.StatusOK, map[string]bool{"ready": true})
	}
}
