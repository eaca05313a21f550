package handler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

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
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		if req.ContentLength > d.MaxBody {
			d.Metrics.observe(outcomeTooLarge, start)
			return tooLarge
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
		if !d.Verifier.Verify(body, req.Header.Get(SignatureHeader)) {
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
			log.Warn().Str("job_id", jobID).Str("problem", delivery.Problem).Msg("signed delivery is not a usable event; kept in the delivery log")
			return echo.NewHTTPError(http.StatusBadRequest, delivery.Problem)
		case store.OutcomeConflict:
			log.Warn().Str("job_id", jobID).Str("status", report.Status).Msg("delivery disagrees with the job's first terminal report; the first stands")
		}
		return c.JSON(http.StatusOK, webhookAnswer{Received: true, JobID: jobID, Duplicate: outcome.Duplicate()})
	}
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
