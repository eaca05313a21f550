package nouveltest

import (
	"sync"
	"time"
)

// SimClock is simulated time for tests. After moves the clock forward by d at
// once, so a schedule of minutes runs in milliseconds; once a wait would pass
// the end given to NewSimClock, After never fires and Done is closed, so the
// waiter idles until the test stops it.
type SimClock struct {
	mu   sync.Mutex
	now  time.Time
	end  time.Time
	done chan struct{}
}

// NewSimClock starts simulated time at start; it runs for at most length.
func NewSimClock(start time.Time, length time.Duration) *SimClock {
	return &SimClock{now: start, end: start.Add(length), done: make(chan struct{})}
}

// Now is the simulated time.
func (c *SimClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After advances the clock by d and returns a channel that has fired, or,
// past the end, one that never fires.
func (c *SimClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.Add(d).After(c.end) {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
		return nil
	}
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// Done is closed once something waited past the end of simulated time.
func (c *SimClock) Done() <-chan struct{} { return c.done }
