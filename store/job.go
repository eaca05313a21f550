package store

import (
	"encoding/json"
	"regexp"
	"time"
)

// Sources say how a job's terminal state was first learned.
const (
	SourceWebhook = "webhook"
	SourcePoll    = "poll"
)

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidJobID reports whether id is a usable job id: 1 to 128 bytes of letters,
// digits, '-' and '_'. Ids are otherwise opaque; UUIDs and cuids both pass.
func ValidJobID(id string) bool { return jobIDPattern.MatchString(id) }

// Project is one video of a job, as the webhook reports it.
type Project struct {
	ProjectID string `json:"projectId"`
	Title     string `json:"title"`
	Status    Status `json:"status"`
	VideoURL  string `json:"videoUrl"`
}

// Job is one generation job in the log. Its JSON form is the one the admin
// API, the CLI's --json and the change feed all share.
type Job struct {
	JobID             string     `json:"jobId"`
	Status            Status     `json:"status"`
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
	// NextPollAt is when the reconciler will poll a job not yet ended;
	// nil (absent) once it has ended.
	NextPollAt *time.Time `json:"nextPollAt,omitempty"`
	// Forward is the job's forward to the app; nil when none was queued
	// (forwarding is off, or the job has not ended).
	Forward *Forward `json:"forward"`

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
	// ID names the delivery for Timeline.DeliveryBody.
	ID         int64     `json:"id"`
	ReceivedAt time.Time `json:"receivedAt"`
	Attempt    int       `json:"attempt"`
	Duplicate  bool      `json:"duplicate"`
	Status     Status    `json:"status"`
	// Outcome is what the delivery did to its job: accepted, duplicate or
	// conflict.
	Outcome Outcome `json:"outcome"`
	// Copies is how many times these exact bytes arrived, at least 1.
	Copies int `json:"copies"`
}

// Report is what a webhook or a poll says about a job. A Report with a
// terminal Status ends the job, unless an earlier terminal report already did.
type Report struct {
	JobID             string
	Status            Status
	TotalProjects     int
	CompletedProjects int
	FailedProjects    int
	Projects          []Project
	// Progress and Stage come from polls only; a terminal report sets
	// Progress to 100.
	Progress int
	Stage    string
}

// Outcome says what a report did to its job.
type Outcome string

// Outcomes of a delivery or a poll that reported a terminal state.
const (
	// OutcomeAccepted: the report ended the job.
	OutcomeAccepted Outcome = "accepted"
	// OutcomeDuplicate: the job had already ended, the same way.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeConflict: the job had already ended differently; the first
	// report stands.
	OutcomeConflict Outcome = "conflict"
	// OutcomeInvalid: a signed delivery that is not a usable event.
	OutcomeInvalid Outcome = "invalid"
)

// Duplicate reports whether the job had already ended before this report.
func (o Outcome) Duplicate() bool { return o == OutcomeDuplicate || o == OutcomeConflict }

// WebhookDelivery is one delivery whose signature has been verified.
type WebhookDelivery struct {
	// Body is the exact bytes received.
	Body       []byte
	ReceivedAt time.Time
	// Attempt is the X-Nouvel-Attempt header, 1 when absent.
	Attempt int
	// Report is the parsed event; nil when the body is not a usable event.
	Report *Report
	// JobID is the job the body names, if any, even when Report is nil.
	JobID string
	// Problem says why the body is not usable when Report is nil.
	Problem string
}

// MaxDeliveries is how many deliveries JobWithDeliveries lists at most.
const MaxDeliveries = 100

// Filter selects jobs for ListJobs.
type Filter struct {
	// Statuses keeps jobs with any of these statuses; empty keeps all.
	Statuses []Status
	// Since keeps jobs created at or after it; zero keeps all.
	Since time.Time
	// Limit is the page size, 1 to MaxLimit.
	Limit int
	// Cursor is a previous page's NextCursor; empty starts at the newest.
	Cursor string
}

// MaxLimit is the largest page ListJobs and Events return.
const MaxLimit = 500

// Stats are counts over the whole log.
type Stats struct {
	Jobs           int            `json:"jobs"`
	ByStatus       map[string]int `json:"byStatus"`
	BySource       map[string]int `json:"bySource"`
	Deliveries     int            `json:"deliveries"`
	Duplicates     int            `json:"duplicates"`
	Conflicts      int            `json:"conflicts"`
	Invalid        int            `json:"invalid"`
	WebhooksMissed int            `json:"webhooksMissed"`
	LastSeq        int64          `json:"lastSeq"`
}

// PollTarget is a job the reconciler may poll, with the schedule state its
// next gap depends on.
type PollTarget struct {
	JobID      string
	CreatedAt  time.Time
	NextPollAt time.Time
	// Step counts answers that said the job is still running.
	Step int
	// Failures counts server and transport failures in a row.
	Failures int
	// NotFound counts 404 answers in a row.
	NotFound int
}

// PollResult is what one poll of a job learned, and when to poll it next.
type PollResult struct {
	// Report is Nouvel's answer; nil when the poll failed.
	Report *Report
	// Err is the failure to show as the job's lastError; "" clears it.
	Err string
	// Failed and NotFound say which failure count this poll adds to. A
	// successful answer resets both.
	Failed, NotFound bool
	// End, when set (StatusNotFound), ends the job locally instead.
	End Status
	// Next is when to poll again if the job is still not terminal.
	Next time.Time
}

// FeedEvent is one change-feed event in the JSON form the API shows a job
// in. JSON is shared by every reader of the event: do not modify it.
type FeedEvent struct {
	Seq  int64
	JSON []byte
}

// CheckEnd returns an EINVALID error unless r can end a job: a valid job id
// and a terminal status. Backends check a webhook's report with it before
// they write.
func (r *Report) CheckEnd() error {
	if !r.Status.Terminal() || !ValidJobID(r.JobID) {
		return Errorf(EINVALID, "webhook report for %q with status %q", r.JobID, r.Status)
	}
	return nil
}

// EncodeProjects is the JSON a backend stores for a job's projects: "[]"
// for none. An error is EINVALID.
func EncodeProjects(p []Project) (string, error) {
	if len(p) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", Errorf(EINVALID, "projects: %v", err)
	}
	return string(b), nil
}
