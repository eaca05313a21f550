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

// Phase is a view of a SimClock that runs out at its own end, which may be
// before the SimClock's. It lets a test stop one reconciler mid-schedule
// and start another while everything bound to the SimClock keeps one time
// line: once a wait would pass the phase's end, After never fires and Done
// is closed.
type Phase struct {
	sim   *SimClock
	end   time.Time
	watch func(now time.Time)
	once  sync.Once
	done  chan struct{}
}

// Phase returns a view of c that runs out at end. watch, when not nil, is
// called with the new time each time the view moves the clock, before the
// waiter does any work at that time.
func (c *SimClock) Phase(end time.Time, watch func(now time.Time)) *Phase {
	return &Phase{sim: c, end: end, watch: watch, done: make(chan struct{})}
}

// Now is the simulated time.
func (p *Phase) Now() time.Time { return p.sim.Now() }

// After is the SimClock's After, except that a wait past the phase's end
// never fires and closes Done.
func (p *Phase) After(d time.Duration) <-chan time.Time {
	var ch <-chan time.Time
	if !p.sim.Now().Add(d).After(p.end) {
		ch = p.sim.After(d)
	}
	if ch == nil {
		p.once.Do(func() { close(p.done) })
		return nil
	}
	if p.watch != nil {
		p.watch(p.sim.Now())
	}
	return ch
}

// Done is closed once something waited past the phase's end.
func (p *Phase) Done() <-chan struct{} { return p.done }
