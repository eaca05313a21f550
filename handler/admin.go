package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/store"
)

// MaxWait is the longest long-poll the admin API holds a request for.
const MaxWait = 5 * time.Minute

// Page sizes when a request names none.
const (
	defaultJobsLimit   = 50
	defaultEventsLimit = 100
)

func handleHealthz() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

func handleListJobs(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		f := store.Filter{Cursor: c.QueryParam("cursor")}
		var err error
		if f.Limit, err = intParam(c, "limit", defaultJobsLimit); err != nil {
			return err
		}
		if s := c.QueryParam("status"); s != "" {
			for _, st := range strings.Split(s, ",") {
				f.Statuses = append(f.Statuses, store.Status(st))
			}
		}
		if s := c.QueryParam("since"); s != "" {
			if f.Since, err = time.Parse(time.RFC3339, s); err != nil {
				return badRequest("since %q is not an RFC3339 time", s)
			}
		}
		jobs, next, err := d.Store.ListJobs(c.Request().Context(), f)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"jobs": jobs, "nextCursor": next})
	}
}

// handleGetJob answers one job with its deliveries; with ?wait= it first
// waits for the job to end, up to that long.
func handleGetJob(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("jobId")
		if !store.ValidJobID(id) {
			return badRequest("jobId must be 1-128 letters, digits, '-' or '_'")
		}
		wait, err := waitParam(c)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		if wait > 0 {
			wctx, cancel := context.WithTimeout(ctx, wait)
			_, err := d.Store.WaitJob(wctx, id)
			cancel()
			if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		// Answered as it stands even if shutdown ended the wait.
		j, err := d.Store.JobWithDeliveries(context.WithoutCancel(ctx), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, jobAnswer{Job: j, Deliveries: j.Deliveries, DeliveriesTotal: j.DeliveriesTotal})
	}
}

// jobAnswer is one job as GET /v1/jobs/{id} answers it: its deliveries and
// their total are always there, [] and 0 for a job ended by a poll, where a
// job in a list leaves them out.
type jobAnswer struct {
	store.Job
	Deliveries      []store.Delivery `json:"deliveries"`
	DeliveriesTotal int              `json:"deliveriesTotal"`
}

func handleTrackJob(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		var body struct {
			JobID string `json:"jobId"`
		}
		if err := json.NewDecoder(io.LimitReader(c.Request().Body, 4096)).Decode(&body); err != nil {
			return badRequest("body must be JSON like {\"jobId\":\"…\"}")
		}
		if !store.ValidJobID(body.JobID) {
			return badRequest("jobId must be 1-128 letters, digits, '-' or '_'")
		}
		track := func(ctx context.Context, id string) (store.Job, bool, error) {
			return d.Store.Track(ctx, id, d.now()) // nothing polls; a reconciler started later will
		}
		if d.Poller != nil {
			track = d.Poller.Track
		}
		j, created, err := track(c.Request().Context(), body.JobID)
		if err != nil {
			return err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		ans := trackAnswer{Job: j}
		if d.Poller == nil {
			ans.Warning = noPollerWarning
		}
		return c.JSON(status, ans)
	}
}

// noPollerWarning is added to a track answer when the reconciler is off.
const noPollerWarning = "NOUVEL_API_KEY is not set: nothing polls this job; only its webhook can end it"

// trackAnswer is POST /v1/jobs: the job, and a warning when nothing will
// poll it.
type trackAnswer struct {
	store.Job
	Warning string `json:"warning,omitempty"`
}

// maxGenerateBody bounds a generate request; Nouvel's takes three URLs and
// some instructions.
const maxGenerateBody = 1 << 20

// handleGenerate submits Nouvel's generate body through the reconciler,
// which sets webhookUrl and tracks the job.
func handleGenerate(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		if d.Poller == nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "submitting needs NOUVEL_API_KEY to be set")
		}
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxGenerateBody+1))
		if err != nil {
			return err
		}
		if len(body) > maxGenerateBody {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "generate body is larger than 1MiB")
		}
		answer, err := d.Poller.Submit(c.Request().Context(), body)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusCreated, answer)
	}
}

// handleEvents serves the change feed: JSON, long-polled with ?wait=, or a
// server-sent event stream when the client accepts text/event-stream.
func handleEvents(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		after, err := int64Param(c, "after", lastEventID(c))
		if err != nil {
			return err
		}
		limit, err := intParam(c, "limit", defaultEventsLimit)
		if err != nil {
			return err
		}
		if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "text/event-stream") {
			return streamEvents(c, d.Store, after, limit)
		}
		wait, err := waitParam(c)
		if err != nil {
			return err
		}
		if wait > 0 {
			return longPollEvents(c, d.Store, after, limit, wait)
		}
		jobs, last, err := d.Store.Events(c.Request().Context(), after, limit)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"events": jobs, "last": last})
	}
}

// statsAnswer is /v1/stats: the store's counts plus what only the running
// process knows.
type statsAnswer struct {
	store.Stats
	// RejectedSignatures counts since this process started, unlike the
	// store's counts: rejected requests are not stored, on purpose.
	RejectedSignatures      int64  `json:"rejectedSignatures"`
	RejectedSignaturesSince string `json:"rejectedSignaturesSince"`
	Poller                  any    `json:"poller"`
	// Forwards is the forwarding queue's counts; null when forwarding is
	// off.
	Forwards *store.ForwardStats `json:"forwards"`
}

func handleStats(d Deps) echo.HandlerFunc {
	since := d.now().UTC().Format(time.RFC3339)
	return func(c echo.Context) error {
		st, err := d.Store.Stats(c.Request().Context())
		if err != nil {
			return err
		}
		ans := statsAnswer{Stats: st, RejectedSignatures: d.Metrics.RejectedSignatures(),
			RejectedSignaturesSince: since, Poller: map[string]any{"enabled": false}}
		if d.Poller != nil {
			ans.Poller = d.Poller.Status()
		}
		if d.Forwarder != nil {
			fs, err := d.Store.ForwardStats(c.Request().Context())
			if err != nil {
				return err
			}
			ans.Forwards = &fs
		}
		return c.JSON(http.StatusOK, ans)
	}
}

func badRequest(format string, args ...any) error {
	return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...))
}

func intParam(c echo.Context, name string, def int) (int, error) {
	n, err := int64Param(c, name, int64(def))
	return int(n), err
}

func int64Param(c echo.Context, name string, def int64) (int64, error) {
	s := c.QueryParam(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s %q is not a whole number of 0 or more", name, s)
	}
	return n, nil
}

// waitParam reads ?wait= as a Go duration ("30s") or whole seconds ("30"),
// capped at MaxWait.
func waitParam(c echo.Context) (time.Duration, error) {
	s := c.QueryParam("wait")
	if s == "" {
		return 0, nil
	}
	wait, err := time.ParseDuration(s)
	if n, nerr := strconv.Atoi(s); nerr == nil {
		wait, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || wait < 0 {
		return 0, badRequest("wait %q is not a duration like 30s", s)
	}
	return min(wait, MaxWait), nil
}

func lastEventID(c echo.Context) int64 {
	n, _ := strconv.ParseInt(c.Request().Header.Get("Last-Event-ID"), 10, 64)
	return max(n, 0)
}
