package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The types here are what `nouvelhook db copy` moves between backends: the
// raw rows of a log, every column, so that a copy keeps what the domain
// types do not show (the schedule, the missed-webhook check, the raw bodies
// and their hashes, row ids that cursors are made of). Both backends keep
// times as unix nanoseconds, UTC, so rows move unchanged.

// JobRow is one row of the jobs table. Pointers are columns that may be
// NULL.
type JobRow struct {
	ID                int64
	JobID             string
	Status            Status
	Terminal          bool
	TotalProjects     int64
	CompletedProjects int64
	FailedProjects    int64
	// Projects is the projects' JSON as stored.
	Projects          string
	Source            string
	Progress          int64
	Stage             string
	WebhookDeliveries int64
	WebhookMissed     bool
	PollCount         int64
	LastError         string
	CreatedAt         int64
	UpdatedAt         int64
	TerminalAt        *int64
	Seq               *int64
	NextPollAt        *int64
	PollStep          int64
	FailCount         int64
	NotFoundCount     int64
	PollEndedAt       *int64
	MissedChecked     bool
}

// DeliveryRow is one row of the deliveries table: the raw bytes of one
// signed delivery, or of identical ones counted in Copies. BodyHash is nil
// for rows a SQLite log stored before it hashed bodies.
type DeliveryRow struct {
	ID             int64
	JobRow         *int64
	JobID          *string
	ReceivedAt     int64
	LastReceivedAt *int64
	Attempt        int64
	Status         string
	Outcome        string
	Error          string
	Body           []byte
	BodyHash       []byte
	Copies         int64
}

// Record is one row of an exported log: exactly one of Job and Delivery is
// set. Every job comes before the first delivery, each in id order, so an
// importer can insert them as they come.
type Record struct {
	Job      *JobRow
	Delivery *DeliveryRow
}

// LogCounts are what a copy is checked by: the rows of each table, the last
// seq given out (which pruning never lowers), and the counters behind Stats
// by name (status:<status>, source:<source>, outcome:<outcome>, missed).
type LogCounts struct {
	Jobs       int64
	Deliveries int64
	LastSeq    int64
	Counters   map[string]int64
}

// Empty reports whether the counts are those of a log nothing was ever
// written to.
func (c LogCounts) Empty() bool {
	if c.Jobs != 0 || c.Deliveries != 0 || c.LastSeq != 0 {
		return false
	}
	for _, n := range c.Counters {
		if n != 0 {
			return false
		}
	}
	return true
}

// Diff describes how c differs from want, "" when they are equal. Counters
// at zero count as absent.
func (c LogCounts) Diff(want LogCounts) string {
	var d []string
	if c.Jobs != want.Jobs {
		d = append(d, fmt.Sprintf("jobs %d, want %d", c.Jobs, want.Jobs))
	}
	if c.Deliveries != want.Deliveries {
		d = append(d, fmt.Sprintf("deliveries %d, want %d", c.Deliveries, want.Deliveries))
	}
	if c.LastSeq != want.LastSeq {
		d = append(d, fmt.Sprintf("last seq %d, want %d", c.LastSeq, want.LastSeq))
	}
	names := map[string]bool{}
	for n := range c.Counters {
		names[n] = true
	}
	for n := range want.Counters {
		names[n] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if c.Counters[n] != want.Counters[n] {
			d = append(d, fmt.Sprintf("counter %s %d, want %d", n, c.Counters[n], want.Counters[n]))
		}
	}
	return strings.Join(d, "; ")
}

// ExportFunc reads a whole log in one consistent snapshot, calling fn for
// each row in Record's order, and returns the log's counts as of that
// snapshot, Jobs and Deliveries being the rows it passed to fn. An error
// from fn stops it and is returned.
type ExportFunc func(ctx context.Context, fn func(Record) error) (LogCounts, error)

// Exporter is a log that can be read out whole, for `db copy`.
type Exporter interface {
	// Export is an ExportFunc over this log.
	Export(ctx context.Context, fn func(Record) error) (LogCounts, error)
}

// Importer is a log that can be filled from another, for `db copy`.
type Importer interface {
	// Import writes every row from, with its id and seq, then sets the
	// counters and the last seq to those from returns, all in one
	// transaction that commits only if the log was empty and stays
	// untouched by other writers meanwhile; it then returns the log's counts
	// read afresh. A log that is not empty is ErrInvalid and is left as it
	// was; any failure leaves the log as it was.
	Import(ctx context.Context, from ExportFunc) (LogCounts, error)
}

// NotEmpty is the error an Importer returns for a log that holds anything.
func NotEmpty(c LogCounts) error {
	return Errorf(EINVALID, "the target log is not empty (%d jobs, %d deliveries, last seq %d); db copy writes only into an empty one",
		c.Jobs, c.Deliveries, c.LastSeq)
}
