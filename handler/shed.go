package handler

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// ShedGrace is how long a connection may take to send a request before it
// can be cut to make room, when the public listener is full. A delivery that
// waited in the kernel's backlog has its bytes there already when it is
// accepted, so it is read at once; a slow client is not.
const ShedGrace = 200 * time.Millisecond

// ShedListener keeps at most max connections open. Past that it accepts no
// more, so new connections wait in the kernel's backlog, as with
// netutil.LimitListener, but it does not leave the slots to whoever holds
// them: a connection that has spent longer than grace sending a request (or
// idle between requests) is closed to make room for the next one waiting.
// A connection whose request has been read (see markRead) is never cut, so
// nothing accepted is answered half-way. Without this, a few thousand
// clients trickling bodies hold every slot for the whole read timeout, and
// a signed delivery waits behind them for longer than Nouvel does.
type ShedListener struct {
	net.Listener
	max   int
	grace time.Duration

	mu    sync.Mutex
	conns map[*shedConn]struct{}
	wake  chan struct{} // a slot freed, or a connection went idle
	done  chan struct{}
	close sync.Once
}

// NewShedListener returns ln capped at max open connections, cutting the
// slowest when full (see ShedListener).
func NewShedListener(ln net.Listener, max int, grace time.Duration) *ShedListener {
	return &ShedListener{Listener: ln, max: max, grace: grace,
		conns: make(map[*shedConn]struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept waits for a free slot, making one by cutting a stalled connection
// when it can, then accepts the next connection.
func (l *ShedListener) Accept() (net.Conn, error) {
	for {
		wait, ok := l.makeRoom(time.Now())
		if ok {
			break
		}
		var timer *time.Timer
		var expired <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			expired = timer.C
		}
		select {
		case <-l.done:
			return nil, net.ErrClosed
		case <-l.wake:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &shedConn{Conn: c, l: l, since: time.Now()}
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	return sc, nil
}

// makeRoom reports whether a slot is free, cutting the connection that has
// stalled longest if that is what it takes. When none can be cut yet, it
// says how long until one can (0: only when a slot frees).
func (l *ShedListener) makeRoom(now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	if len(l.conns) < l.max {
		l.mu.Unlock()
		return 0, true
	}
	var victim *shedConn
	for c := range l.conns {
		if !c.handling && (victim == nil || c.since.Before(victim.since)) {
			victim = c
		}
	}
	if victim == nil {
		l.mu.Unlock()
		return 0, false
	}
	if age := now.Sub(victim.since); age < l.grace {
		l.mu.Unlock()
		return l.grace - age, false
	}
	delete(l.conns, victim)
	l.mu.Unlock()
	victim.Conn.Close() // its server goroutine sees the error and ends
	return 0, true
}

// Close closes the listener and ends a wait in Accept.
func (l *ShedListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open is the number of connections counted against the cap.
func (l *ShedListener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *ShedListener) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// shedConn is a connection of a ShedListener: handling is set while its
// request is being handled, after it was read, and since is when it began
// sending a request or went idle.
type shedConn struct {
	net.Conn
	l        *ShedListener
	handling bool      // guarded by l.mu
	since    time.Time // guarded by l.mu
	once     sync.Once
}

func (c *shedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
	return c.Conn.Close()
}

func (c *shedConn) set(handling bool) {
	c.l.mu.Lock()
	c.handling, c.since = handling, time.Now()
	c.l.mu.Unlock()
	if !handling {
		c.l.signal()
	}
}

// shedConnKey finds a request's shedConn in its context.
type shedConnKey struct{}

// shedConnContext puts a ShedListener's connection in its requests'
// context, for markRead (http.Server.ConnContext).
func shedConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*shedConn); ok {
		return context.WithValue(ctx, shedConnKey{}, sc)
	}
	return ctx
}

// shedConnState marks a connection as sending a request again when a new
// request starts on it, or idle after one (http.Server.ConnState).
func shedConnState(c net.Conn, state http.ConnState) {
	sc, ok := c.(*shedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive, http.StateIdle:
		sc.set(false)
	}
}

// markRead tells the connection's listener that the request has been read
// in full and is being handled, so it must not be cut.
func markRead(ctx context.Context) {
	if sc, ok := ctx.Value(shedConnKey{}).(*shedConn); ok {
		sc.set(true)
	}
}
