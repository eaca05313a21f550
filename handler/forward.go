package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/store"
)

// Forwarder is what the admin API needs of the loop that forwards ended
// jobs to the app.
type Forwarder interface {
	// Ready is nil while forwarding runs, or says that it is paused and
	// why (the app answered 410 Gone), as a reason /readyz shows as it is,
	// never including a secret.
	Ready() error
	// Kick wakes the forwarder now, so that forwards the admin API has just
	// queued go out without waiting for its timer.
	Kick()
}

// errForwardingOff answers the forwarding routes when NOUVELHOOK_FORWARD_URL
// is unset: the queue is not served, so that nothing seems queued that no
// process will send.
var errForwardingOff = echo.NewHTTPError(http.StatusConflict, "forwarding is off: set NOUVELHOOK_FORWARD_URL")

// defaultForwardsLimit is the page size of GET /v1/forwards when the
// request names none.
const defaultForwardsLimit = 50

// maxForwardsBody bounds a retry or replay body: MaxLimit job ids of 128
// bytes each, quoted, fit well within it.
const maxForwardsBody = 128 << 10

// requireForwarder wraps a forwarding route: 409 when forwarding is off.
func requireForwarder(d Deps, h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if d.Forwarder == nil {
			return errForwardingOff
		}
		return h(c)
	}
}

// handleListForwards serves a page of the forwarding queue: failed and
// paused first, then pending, then delivered.
func handleListForwards(d Deps) echo.HandlerFunc {
	return requireForwarder(d, func(c echo.Context) error {
		f := store.ForwardFilter{Cursor: c.QueryParam("cursor")}
		var err error
		if f.Limit, err = intParam(c, "limit", defaultForwardsLimit); err != nil {
			return err
		}
		if s := c.QueryParam("state"); s != "" {
			for _, st := range strings.Split(s, ",") {
				state := store.ForwardState(strings.TrimSpace(st))
				if !state.Known() {
					return badRequest("state %q is not one of pending, delivered, failed, paused", st)
				}
				f.States = append(f.States, state)
			}
		}
		forwards, next, err := d.Store.ListForwards(c.Request().Context(), f)
		if err != nil {
			return err
		}
		if forwards == nil {
			forwards = []store.QueuedForward{}
		}
		return c.JSON(http.StatusOK, map[string]any{"forwards": forwards, "nextCursor": next})
	})
}

// handleRetryForwards queues the named jobs' forwards again, all or none,
// and resumes forwarding if it was paused.
func handleRetryForwards(d Deps) echo.HandlerFunc {
	return requireForwarder(d, func(c echo.Context) error {
		var body struct {
			JobIDs []string `json:"jobIds"`
		}
		if err := decodeBody(c, &body); err != nil || body.JobIDs == nil {
			return badRequest(`body must be JSON like {"jobIds":["…"]}`)
		}
		ids := slices.Compact(slices.Sorted(slices.Values(body.JobIDs)))
		switch {
		case len(ids) == 0:
			return badRequest("jobIds must name at least one job")
		case len(ids) > store.MaxLimit:
			return badRequest("jobIds names %d jobs; at most %d at once", len(ids), store.MaxLimit)
		}
		for _, id := range ids {
			if !store.ValidJobID(id) {
				return badRequest("jobId %q must be 1-128 letters, digits, '-' or '_'", clip(id))
			}
		}
		n, err := d.Store.RetryForwards(c.Request().Context(), d.now(), ids)
		if err != nil {
			return err
		}
		d.Forwarder.Kick()
		return c.JSON(http.StatusOK, map[string]int{"queued": n})
	})
}

// handleReplayForwards queues again the forward of every job with a seq
// after the one given.
func handleReplayForwards(d Deps) echo.HandlerFunc {
	return requireForwarder(d, func(c echo.Context) error {
		var body struct {
			// A pointer, so that a body without "after" is refused rather
			// than taken as 0, which would replay the whole log.
			After *int64 `json:"after"`
		}
		if err := decodeBody(c, &body); err != nil || body.After == nil {
			return badRequest(`body must be JSON like {"after":SEQ}`)
		}
		if *body.After < 0 {
			return badRequest("after %d must be a seq of 0 or more", *body.After)
		}
		n, err := d.Store.ReplayForwards(c.Request().Context(), d.now(), *body.After)
		if err != nil {
			return err
		}
		d.Forwarder.Kick()
		return c.JSON(http.StatusOK, map[string]int{"queued": n})
	})
}

// handleResumeForwarding ends a pause: the paused forwards are due now.
func handleResumeForwarding(d Deps) echo.HandlerFunc {
	return requireForwarder(d, func(c echo.Context) error {
		if err := d.Store.ResumeForwarding(c.Request().Context(), d.now()); err != nil {
			return err
		}
		d.Forwarder.Kick()
		return c.JSON(http.StatusOK, map[string]bool{"resumed": true})
	})
}

// decodeBody reads one JSON value of at most maxForwardsBody bytes into v.
// Unknown fields are refused, so that a misspelt one ("jobIDs") is not
// taken for an empty request.
func decodeBody(c echo.Context, v any) error {
	r := io.LimitReader(c.Request().Body, maxForwardsBody+1)
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// clip shortens what a client sent to a length fit for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:n], len(s))
}
