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

// ForwardRow is one row of the forwards table: a job's forward to the app,
// lease and fencing token included.
type ForwardRow struct {
	JobRow        int64
	Seq           int64
	State         ForwardState
	Attempts      int64
	LastStatus    int64
	LastError     string
	NextAttemptAt *int64
	DeliveredAt   *int64
	EnqueuedAt    int64
	LeaseUntil    *int64
	Claims        int64
}

// ForwardAttemptRow is one row of the forward_attempts table.
type ForwardAttemptRow struct {
	ID      int64
	JobRow  int64
	Attempt int64
	At      int64
	TookMs  int64
	Status  int64
	Error   string
	State   ForwardState
}

// PollRow is one row of the polls table.
type PollRow struct {
	ID     int64
	JobRow int64
	At     int64
	Status string
	Error  string
	Ended  bool
}

// Record is one row of an exported log: exactly one field is set. Every
// job comes before the first row of any other table, and each table's rows
// come in id order (forwards in job row order), so an importer can insert
// them as they come.
type Record struct {
	Job            *JobRow
	Delivery       *DeliveryRow
	Forward        *ForwardRow
	ForwardAttempt *ForwardAttemptRow
	Poll           *PollRow
}

// LogCounts are what a copy is checked by: the rows of each table, the last
// seq given out (which pruning never lowers), the counters behind Stats by
// name (status:<status>, source:<source>, outcome:<outcome>, missed), the
// forwards in each state (forward:<state>), and the forwarding pause.
//
// Both backends give forward:<state> as counted from the forwards' rows,
// whatever they keep to answer ForwardStats, and an importer does not write
// those counters but derives its own from the forwards it copied; so a copy
// either way is checked by the states its rows arrived in.
type LogCounts struct {
	Jobs            int64
	Deliveries      int64
	Forwards        int64
	ForwardAttempts int64
	Polls           int64
	LastSeq         int64
	Counters        map[string]int64
	// Paused is set while forwarding is paused, with PauseReason saying
	// why; an importer pauses the copy the same way.
	Paused      bool
	PauseReason string
}

// Empty reports whether the counts are those of a log nothing was ever
// written to.
func (c LogCounts) Empty() bool {
	if c.Jobs != 0 || c.Deliveries != 0 || c.Forwards != 0 || c.ForwardAttempts != 0 || c.Polls != 0 ||
		c.LastSeq != 0 || c.Paused {
		return false
	}
	for _, n := range c.Counters {
		if n != 0 {
			return false
		}
	}
	return true
}

// ForwardCounterPrefix begins the name of each counter of LogCounts that
// counts the forwards in one state: forward:<state>.
const ForwardCounterPrefix = "forward:"

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
	for _, n := range []struct {
		what      string
		got, want int64
	}{
		{"forwards", c.Forwards, want.Forwards},
		{"forward attempts", c.ForwardAttempts, want.ForwardAttempts},
		{"polls", c.Polls, want.Polls},
		{"last seq", c.LastSeq, want.LastSeq},
	} {
		if n.got != n.want {
			d = append(d, fmt.Sprintf("%s %d, want %d", n.what, n.got, n.want))
		}
	}
	if c.Paused != want.Paused || c.PauseReason != want.PauseReason {
		d = append(d, fmt.Sprintf("forwarding paused %v (%q), want %v (%q)", c.Paused, c.PauseReason,
			want.Paused, want.PauseReason))
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
// snapshot, the counts of rows being those it passed to fn. An error
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
	// counters, the last seq and the forwarding pause to those from
	// returns (forward:<state> excepted: it follows from the forwards
	// written), all in one transaction that commits only if the log was
	// empty and stays untouched by other writers meanwhile; it then returns
	// the log's counts read afresh. A log that is not empty is ErrInvalid and is left as it
	// was; any failure leaves the log as it was.
	Import(ctx context.Context, from ExportFunc) (LogCounts, error)
}

// NotEmpty is the error an Importer returns for a log that holds anything.
func NotEmpty(c LogCounts) error {
	return Errorf(EINVALID, "the target log is not empty (%d jobs, %d deliveries, %d forwards, last seq %d); db copy writes only into an empty one",
		c.Jobs, c.Deliveries, c.Forwards, c.LastSeq)
}
