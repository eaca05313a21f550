package handler

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/store"
)

// sseWriteSize bounds the buffer of one event stream: what it writes at
// once, and keeps while events flow.
const sseWriteSize = 32 << 10

// keepAlive is how often an idle event stream gets a comment line, so
// proxies do not cut it.
const keepAlive = 15 * time.Second

// streamEvents writes the change feed as server-sent events, one "job" event
// per terminal job with the seq as its id, until the client goes away or the
// server shuts down. A client resumes with Last-Event-ID.
//
// Each job's JSON comes encoded once from the store for every stream, so a
// thousand streams cost a thousand copies of the bytes, not a thousand
// encodings, and a batch goes out in few writes.
func streamEvents(c echo.Context, st store.Store, after int64, limit int) error {
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
		if len(events) == 0 {
			buf = nil // an idle stream holds no buffer
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return nil
			}
		}
		// Frames go out in writes of up to sseWriteSize: on loopback the
		// cost of a stream is mostly write calls, not bytes.
		for _, e := range events {
			if len(buf) > 0 && len(buf)+len(e.JSON)+64 > sseWriteSize {
				if _, err := w.Write(buf); err != nil {
					return nil
				}
				buf = buf[:0]
			}
			buf = strconv.AppendInt(append(buf, "id: "...), e.Seq, 10)
			buf = append(buf, "\nevent: job\ndata: "...)
			buf = append(append(buf, e.JSON...), "\n\n"...)
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return nil
			}
			buf = buf[:0]
		}
		if cap(buf) > 2*sseWriteSize {
			buf = nil // grown by one large job: do not keep it
		}
		w.Flush()
		after = last
	}
}

// longPollEvents answers GET /v1/events?wait= as the plain GET does,
// {"events":[job…],"last":SEQ}, once there are events after after or the
// wait ends. The jobs' JSON comes encoded once for every long-poll.
func longPollEvents(c echo.Context, st store.Store, after int64, limit int, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
	events, last, err := st.WaitFeed(ctx, after, limit)
	cancel()
	if err != nil {
		return err
	}
	size := 32
	for _, e := range events {
		size += len(e.JSON) + 1
	}
	b := append(make([]byte, 0, size), `{"events":[`...)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.JSON...)
	}
	b = strconv.AppendInt(append(b, `],"last":`...), last, 10)
	return c.JSONBlob(http.StatusOK, append(b, "}\n"...))
}
