package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/store"
)

func TestAnswerFor(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want answer
	}{
		{"echo", echo.NewHTTPError(http.StatusRequestEntityTooLarge, "body too large"), answer{413, "body too large", ""}},
		{"echo without message", echo.NewHTTPError(http.StatusMethodNotAllowed, 7), answer{405, "method not allowed", ""}},
		{"not found", store.Errorf(store.ENOTFOUND, "job not found: j1"), answer{404, "job not found: j1", ""}},
		{"invalid, wrapped", fmt.Errorf("list: %w", store.Errorf(store.EINVALID, "limit must be between 1 and 500")),
			answer{400, "limit must be between 1 and 500", ""}},
		{"unavailable hides its cause", store.Errorf(store.EUNAVAILABLE, "store unavailable: disk I/O error at /data/nh.db"),
			answer{503, "store unavailable", "store unavailable"}},
		{"sentinel", store.ErrUnavailable, answer{503, "store unavailable", "store unavailable"}},
		{"Nouvel 4xx", &reconcile.APIError{Status: 422, Message: "bad url"}, answer{422, "Nouvel: bad url", ""}},
		{"Nouvel 5xx", &reconcile.APIError{Status: 500, Message: "oops"}, answer{502, "Nouvel: oops", ""}},
		{"Nouvel unreachable", fmt.Errorf("%w: dial tcp: refused", reconcile.ErrTransport),
			answer{502, "nouvel: transport error: dial tcp: refused", ""}},
		{"cancelled", context.Canceled, answer{503, "request cancelled: the service is shutting down or the client left", ""}},
		{"anything else", errors.New("boom"), answer{500, "internal error", "request failed"}},
	} {
		if got := answerFor(tt.err); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
