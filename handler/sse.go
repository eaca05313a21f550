package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/store"
)

// keepAlive is how often an idle event stream gets a comment line, so
// proxies do not cut it.
const keepAlive = 15 * time.Second

// streamEvents writes the change feed as server-sent events, one "job" event
// per terminal job with the seq as its id, until the client goes away or the
// server shuts down. A client resumes with Last-Event-ID.
func streamEvents(c echo.Context, st *store.Store, after int64, limit int) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	ctx := c.Request().Context()
	for {
		wctx, cancel := context.WithTimeout(ctx, keepAlive)
		jobs, last, err := st.WaitEvents(wctx, after, limit)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		}
		for _, j := range jobs {
			data, err := json.Marshal(j)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: job\ndata: %s\n\n", j.Seq, data); err != nil {
				return nil
			}
		}
		w.Flush()
		after = last
	}
}
