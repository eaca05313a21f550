package handler

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/store"
)

// storeStatus is the one table from a store error code to the HTTP status
// it is answered with.
func storeStatus(code string) int {
	switch code {
	case store.ENOTFOUND:
		return http.StatusNotFound
	case store.EINVALID:
		return http.StatusBadRequest
	case store.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// answer is how one error is answered: its status, the message shown to
// the client, and, when that message hides the cause, the log line that
// keeps it.
type answer struct {
	status  int
	message string
	logMsg  string
}

// answerFor maps an error onto its answer: echo's own errors keep their
// status; the store's go by code through storeStatus; Nouvel's refusals
// (*reconcile.APIError) keep a 4xx status and are otherwise a 502, as is a
// failure to reach Nouvel; a cancelled request is a 503; anything else is
// an internal error, logged and not shown.
func answerFor(err error) answer {
	var he *echo.HTTPError
	var ne *reconcile.APIError
	switch {
	case errors.As(err, &he):
		if m, ok := he.Message.(string); ok {
			return answer{status: he.Code, message: m}
		}
		return answer{status: he.Code, message: strings.ToLower(http.StatusText(he.Code))}
	case errors.As(err, &ne):
		status := ne.Status
		if status < 400 || status > 499 {
			status = http.StatusBadGateway
		}
		return answer{status: status, message: "Nouvel: " + ne.Message}
	case errors.Is(err, reconcile.ErrTransport):
		return answer{status: http.StatusBadGateway, message: err.Error()}
	case store.ErrorCode(err) == store.EUNAVAILABLE:
		// The backend's text (a path, a host) stays in the log.
		return answer{status: storeStatus(store.EUNAVAILABLE), message: "store unavailable", logMsg: "store unavailable"}
	case store.ErrorCode(err) != "":
		return answer{status: storeStatus(store.ErrorCode(err)), message: store.ErrorMessage(err)}
	case errors.Is(err, context.Canceled):
		// The client went away, or shutdown ended the request: say so,
		// never an empty 200.
		return answer{status: http.StatusServiceUnavailable,
			message: "request cancelled: the service is shutting down or the client left"}
	}
	return answer{status: http.StatusInternalServerError, message: "internal error", logMsg: "request failed"}
}

// errorHandler answers every error as {"error":"…"} with the status
// answerFor gives it, and logs those whose message hides the cause.
func errorHandler(log zerolog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		a := answerFor(err)
		if a.logMsg != "" {
			log.Error().Err(err).Str("path", c.Path()).Msg(a.logMsg)
		}
		if err := c.JSON(a.status, map[string]string{"error": a.message}); err != nil {
			log.Debug().Err(err).Msg("write error answer")
		}
	}
}
