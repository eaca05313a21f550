package store

// Status is a job's state. The first six are Nouvel's own; Expired and
// NotFound are local end states the reconciler assigns.
type Status string

// Job statuses.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusPartial   Status = "partial"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
	StatusNotFound  Status = "not_found"
)

// Terminal reports whether s is an end state, Nouvel's or local. This is
// the one place the terminal set is written out.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusPartial, StatusFailed, StatusCancelled, StatusExpired, StatusNotFound:
		return true
	}
	return false
}

// Known reports whether s is any status a job in the log can have.
func (s Status) Known() bool {
	return s == StatusPending || s == StatusRunning || s.Terminal()
}

// Local reports whether s is an end state nouvelhook assigns itself, which
// Nouvel never reports.
func (s Status) Local() bool { return s == StatusExpired || s == StatusNotFound }

// Nouvel reports whether s is a status Nouvel itself reports for a job.
func (s Status) Nouvel() bool { return s.Known() && !s.Local() }
