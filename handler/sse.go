package handler

import (
	"context"
	"net/http"
	"strconv"
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
//
// Each job's JSON comes encoded once from the store for every stream, and a
// batch goes out in one write, so a thousand streams cost a thousand copies
// of the bytes, not a thousand encodings.
func streamEvents(c echo.Context, st *store.Store, after int64, limit int) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	ctx := c.Request().Context()
	var buf []byte
	for {
		wctx, cancel := context.WithTimeout(ctx, keepAlive)
		events, last, err := st.WaitFeed(wctx, after, limit)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		buf = buf[:0]
		if len(events) == 0 {
			buf = append(buf, ": keep-alive\n\n"...)
		}
		for _, e := range events {
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, e.Seq, 10)
			buf = append(buf, "\nevent: job\ndata: "...)
			buf = append(append(buf, e.JSON...), "\n\n"...)
		}
		if _, err := w.Write(buf); err != nil {
			return nil
		}
		w.Flush()
		after = last
		if cap(buf) > 1<<20 {
			buf = nil // do not hold a big backlog's buffer for the stream's life
		}
	}
}
