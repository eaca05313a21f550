package nouveltest

import (
	"context"
	"time"
)

// Fault makes the next Count matching requests misbehave. A faulted request
// with a Status answers it and does not advance any job; one with only a
// Delay is answered normally afterwards, unless its client gave up first.
type Fault struct {
	// Status is answered instead of the real answer; 0 answers normally.
	// 429 carries Retry-After and Nouvel's rate-limit body, and like a real
	// 429 does not count toward the rate window.
	Status int
	// RetryAfter is the Retry-After of an injected 429, rounded up to whole
	// seconds (at least one).
	RetryAfter time.Duration
	// Delay is slept before answering. The sleep ends early when the client
	// goes away or the Server closes; then nothing is answered.
	Delay time.Duration
	// Count is how many requests the fault applies to; less than 1 means 1.
	Count int
	// JobID limits the fault to GET /api/v1/jobs/{JobID}; "" matches any
	// request, generate included.
	JobID string
}

// InjectFault queues f. Faults apply in the order injected: each request
// takes the first queued fault that matches it.
func (s *Server) InjectFault(f Fault) {
	f.Count = max(f.Count, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// takeFaultLocked removes one use of the first fault matching a request for
// jobID ("" for requests that name no job) and returns it.
func (s *Server) takeFaultLocked(jobID string) Fault {
	for i := range s.faults {
		f := &s.faults[i]
		if f.JobID != "" && f.JobID != jobID {
			continue
		}
		taken := *f
		if f.Count--; f.Count == 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return taken
	}
	return Fault{}
}

// sleep waits for d, and reports false if ctx or the Server ended first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}
