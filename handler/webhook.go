package handler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/nouvelhook/nouvelhook/store"
)

// webhookAnswer is the 200 answer to a stored delivery.
type webhookAnswer struct {
	Received  bool   `json:"received"`
	JobID     string `json:"jobId"`
	Duplicate bool   `json:"duplicate"`
}

// handleWebhook takes one delivery: limit the body, read it once, verify the
// signature on those exact bytes, then parse, commit and answer. Nothing
// else happens before the answer.
func handleWebhook(d Deps) echo.HandlerFunc {
	log := d.Logger.With().Str("component", "webhook").Logger()
	tooLarge := echo.NewHTTPError(http.StatusRequestEntityTooLarge, "body is larger than "+strconv.FormatInt(d.MaxBody, 10)+" bytes")
	badSignature := echo.NewHTTPError(http.StatusUnauthorized, "invalid signature")
	var rec Recorder = d.Store
	if d.Recorder != nil {
		rec = d.Recorder
	}
	// A replayed signed but unusable body is answered 400 each time; one
	// warn line per interval is enough to notice it.
	invalidLog := newLogLimiter(invalidLogEvery)
	return func(c echo.Context) error {
		d.Metrics.inflight.Add(1)
		defer d.Metrics.inflight.Add(-1)
		start := time.Now()
		req := c.Request()
		if req.ContentLength > d.MaxBody {
			d.Metrics.observe(outcomeTooLarge, start)
			closeUnread(c)
			return tooLarge
		}
		sig := req.Header.Get(SignatureHeader)
		if !WellFormedSignature(sig) {
			// No body is read, let alone MACed, for a request that cannot
			// be signed: an unsigned flood costs no more than its headers.
			d.Metrics.observe(outcomeBadSignature, start)
			closeUnread(c)
			log.Debug().Str("remote", c.RealIP()).Msg("rejected signature: missing or malformed header")
			return badSignature
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, d.MaxBody+1))
		if err != nil {
			// Cut short or timed out; the sender will not see an answer.
			d.Metrics.observe(outcomeUnreadable, start)
			return echo.NewHTTPError(http.StatusBadRequest, "could not read the body")
		}
		if int64(len(body)) > d.MaxBody {
			d.Metrics.observe(outcomeTooLarge, start)
			return tooLarge
		}
		markRead(req.Context()) // from here on the sender only waits for the answer
		if !d.Verifier.Verify(body, sig) {
			d.Metrics.observe(outcomeBadSignature, start)
			log.Debug().Str("remote", c.RealIP()).Int("bytes", len(body)).Msg("rejected signature")
			return badSignature
		}

		report, jobID, problem := ParseEvent(body)
		delivery := store.WebhookDelivery{
			Body: body, ReceivedAt: d.now(), Attempt: parseAttempt(req.Header.Get(AttemptHeader)),
			Report: report, JobID: jobID,
		}
		if problem != nil {
			delivery.Problem = problem.Error()
		}
		outcome, err := rec.RecordWebhook(req.Context(), delivery)
		if errors.Is(err, context.Canceled) {
			d.Metrics.observe(outcomeAbandoned, start)
			return err // the sender left before the write was queued; nothing was stored
		}
		if err != nil {
			d.Metrics.observe(outcomeStoreError, start)
			if errors.Is(err, store.ErrUnavailable) {
				return err
			}
			return store.ErrUnavailable // never a 200, nor a 500, for something not stored
		}
		d.Metrics.observe(string(outcome), start)
		switch outcome {
		case store.OutcomeInvalid:
			if n, ok := invalidLog.allow(d.now()); ok {
				log.Warn().Str("job_id", jobID).Str("problem", delivery.Problem).Int64("suppressed", n).
					Msg("signed delivery is not a usable event; kept in the delivery log")
			}
			return echo.NewHTTPError(http.StatusBadRequest, delivery.Problem)
		case store.OutcomeConflict:
			log.Warn().Str("job_id", jobID).Str("status", string(report.Status)).Msg("delivery disagrees with the job's first terminal report; the first stands")
		}
		return c.JSON(http.StatusOK, webhookAnswer{Received: true, JobID: jobID, Duplicate: outcome.Duplicate()})
	}
}

// closeUnread makes a refusal that leaves the body unread close the
// connection. Otherwise net/http reads up to 256 KiB of the body before it
// sends the answer, so a slow sender would hold the connection all the same.
func closeUnread(c echo.Context) {
	if c.Request().ContentLength != 0 {
		c.Response().Header().Set(echo.HeaderConnection, "close")
	}
}

// invalidLogEvery is the most often a signed but unusable delivery is
// logged; the line says how many were left out since the one before.
const invalidLogEvery = 10 * time.Second

// logLimiter lets one log line through per interval and counts the ones it
// holds back.
type logLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{lim: rate.NewLimiter(rate.Every(every), 1)}
}

// allow reports whether a line may be written at now, and how many were
// held back since the last one written.
func (l *logLimiter) allow(now time.Time) (suppressed int64, ok bool) {
	if !l.lim.AllowN(now, 1) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// parseAttempt reads X-Nouvel-Attempt: absent means Nouvel's single attempt,
// 1; an unreadable value is kept as 0.
func parseAttempt(h string) int {
	if h == "" {
		return 1
	}
	n, err := strconv.Atoi(h)
	if err != nil || n < 1 || n > 1000 {
		return 0
	}
	return n
}
