package handler

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/nouvelhook/nouvelhook/store"
)

// timelineAnswer is GET /v1/jobs/{id}/timeline: the job with its
// deliveries, its polls and its forward's attempts, each oldest first.
type timelineAnswer struct {
	Job             jobAnswer              `json:"job"`
	Polls           []store.PollRecord     `json:"polls"`
	ForwardAttempts []store.ForwardAttempt `json:"forwardAttempts"`
}

// handleJobTimeline answers what the console's job page shows. The three
// parts are read one after the other, not as one snapshot: a poll or an
// attempt recorded in between may show in one part and not yet in another.
func handleJobTimeline(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("jobId")
		if !store.ValidJobID(id) {
			return badRequest("jobId must be 1-128 letters, digits, '-' or '_'")
		}
		ctx := c.Request().Context()
		j, err := d.Store.JobWithDeliveries(ctx, id)
		if err != nil {
			return err
		}
		polls, err := d.Store.JobPolls(ctx, id)
		if err != nil {
			return err
		}
		attempts, err := d.Store.ForwardAttempts(ctx, id)
		if err != nil {
			return err
		}
		ans := timelineAnswer{
			Job:             jobAnswer{Job: j, Deliveries: j.Deliveries, DeliveriesTotal: j.DeliveriesTotal},
			Polls:           polls,
			ForwardAttempts: attempts,
		}
		if ans.Job.Deliveries == nil {
			ans.Job.Deliveries = []store.Delivery{}
		}
		if ans.Polls == nil {
			ans.Polls = []store.PollRecord{}
		}
		if ans.ForwardAttempts == nil {
			ans.ForwardAttempts = []store.ForwardAttempt{}
		}
		return c.JSON(http.StatusOK, ans)
	}
}

// handleDeliveryBody answers the exact bytes of one delivery. They are
// whatever a signer sent, so they are served as opaque bytes that a browser
// must not sniff into HTML or script.
func handleDeliveryBody(d Deps) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("jobId")
		if !store.ValidJobID(id) {
			return badRequest("jobId must be 1-128 letters, digits, '-' or '_'")
		}
		raw := c.Param("deliveryId")
		deliveryID, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || deliveryID < 1 {
			return badRequest("deliveryId %q is not a delivery id (a whole number of 1 or more)", clip(raw))
		}
		body, err := d.Store.DeliveryBody(c.Request().Context(), id, deliveryID)
		if err != nil {
			return err
		}
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return c.Blob(http.StatusOK, echo.MIMEOctetStream, body)
	}
}
