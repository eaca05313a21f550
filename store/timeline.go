package store

import (
	"context"
	"time"
)

// PollRecord is one recorded poll of a job, for its timeline.
type PollRecord struct {
	At time.Time `json:"at"`
	// Status is what Nouvel answered the job's status was; "" when the
	// poll got no usable answer.
	Status Status `json:"status"`
	// Error is the failure the poll recorded as the job's lastError.
	Error string `json:"error"`
	// Ended is set when this poll ended the job (it was first to report
	// the end, or ended it locally as not_found).
	Ended bool `json:"ended"`
}

// Timeline is what a job's page shows beyond the job itself: its polls and
// the raw bytes of its deliveries.
type Timeline interface {
	// JobPolls returns the job's last MaxDeliveries polls, oldest first;
	// ErrNotFound for an unknown job.
	JobPolls(ctx context.Context, jobID string) ([]PollRecord, error)
	// DeliveryBody returns the exact bytes of the job's delivery with the
	// given id (Delivery.ID); ErrNotFound when the job has no such one.
	DeliveryBody(ctx context.Context, jobID string, id int64) ([]byte, error)
}
