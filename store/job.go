package store

import (
	"errors"
	"regexp"
	"time"
)

// Job statuses. The first six are Nouvel's own; Expired and NotFound are local
// end states the reconciler assigns.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusPartial   = "partial"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
	StatusNotFound  = "not_found"
)

// Sources say how a job's terminal state was first learned.
const (
	SourceWebhook = "webhook"
	SourcePoll    = "poll"
)

// Errors returned by the store. Callers match them with errors.Is.
var (
	// ErrNotFound means the job is not in the log.
	ErrNotFound = errors.New("job not found")
	// ErrInvalid means the input was rejected before touching the database.
	ErrInvalid = errors.New("invalid input")
	// ErrUnavailable means the store could not commit: the disk is full, the
	// file is read-only, or the store is closed. Nothing was stored.
	ErrUnavailable = errors.New("store unavailable")
)

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidJobID reports whether id is a usable job id: 1 to 128 bytes of letters,
// digits, '-' and '_'. Ids are otherwise opaque; UUIDs and cuids both pass.
func ValidJobID(id string) bool { return jobIDPattern.MatchString(id) }

// IsTerminal reports whether status is an end state, Nouvel's or local.
func IsTerminal(status string) bool {
	switch status {
	case StatusCompleted, StatusPartial, StatusFailed, StatusCancelled, StatusExpired, StatusNotFound:
		return true
	}
	return false
}

// IsKnownStatus reports whether status is any status a job in the log can have.
func IsKnownStatus(status string) bool {
	return status == StatusPending || status == StatusRunning || IsTerminal(status)
}

// Project is one video of a job, as the webhook reports it.
type Project struct {
	ProjectID string `json:"projectId"`
	Title     string `json:"title"`
	Status    string `json:"status"`
	VideoURL  string `json:"videoUrl"`
}

// Job is one generation job in the log. Its JSON form is the one the admin
// API, the CLI's --json and the change feed all share.
type Job struct {
	JobID             string     `json:"jobId"`
	Status            string     `json:"status"`
	Terminal          bool       `json:"terminal"`
	TotalProjects     int        `json:"totalProjects"`
	CompletedProjects int        `json:"completedProjects"`
	FailedProjects    int        `json:"failedProjects"`
	Projects          []Project  `json:"projects"`
	Source            string     `json:"source"`
	Progress          int        `json:"progress"`
	Stage             string     `json:"stage"`
	WebhookDeliveries int        `json:"webhookDeliveries"`
	WebhookMissed     bool       `json:"webhookMissed"`
	PollCount         int        `json:"pollCount"`
	LastError         string     `json:"lastError"`
	CreatedAt         time.Time  `json:"createdAt"`
	UpdatedAt         time.Time  `json:"updatedAt"`
	TerminalAt        *time.Time `json:"terminalAt"`
	Seq               int64      `json:"seq"`

	// Deliveries is filled only when a single job is asked for with its
	// deliveries: the last MaxDeliveries of them, oldest first.
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// DeliveriesTotal, filled with Deliveries, counts every verified
	// delivery the log holds for the job, each copy of a replay included, so
	// it is the sum of Copies over all of them, not only those listed.
	DeliveriesTotal int `json:"deliveriesTotal,omitempty"`
}

// Delivery is one verified webhook delivery of a job, as the admin API shows
// it. The raw body is kept in the store but not shown. Bytes that arrived
// more than once are one Delivery: ReceivedAt, Attempt, Duplicate and Status
// are those of the first arrival, and Copies counts them all.
type Delivery struct {
	ReceivedAt time.Time `json:"receivedAt"`
	Attempt    int       `json:"attempt"`
	Duplicate  bool      `json:"duplicate"`
	Status     string    `json:"status"`
	// Copies is how many times these exact bytes arrived, at least 1.
	Copies int `json:"copies"`
}

// Report is what a webhook or a poll says about a job. A Report with a
// terminal Status ends the job, unless an earlier terminal report already did.
type Report struct {
	JobID             string
	Status            string
	TotalProjects     int
	CompletedProjects int
	FailedProjects    int
	Projects          []Project
	// Progress and Stage come from polls only; a terminal report sets
	// Progress to 100.
	Progress int
	Stage    string
}
