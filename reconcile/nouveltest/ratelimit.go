package nouveltest

import (
	"net/http"
	"strconv"
	"time"
)

// ratePeriod is the length of Nouvel's sliding rate window.
const ratePeriod = time.Minute

// limiter is a sliding-window log per API key: the times of the requests
// counted in the last ratePeriod. The Server's mutex guards it.
type limiter struct {
	limit int
	seen  map[string][]time.Time
}

// rateState is what the X-RateLimit-* headers say after a request.
type rateState struct {
	limit      int
	remaining  int
	reset      time.Time     // when the oldest counted request leaves the window
	retryAfter time.Duration // set only when a request was refused
}

func newLimiter(limit int) limiter {
	return limiter{limit: limit, seen: make(map[string][]time.Time)}
}

// peek reports key's state without counting a request.
func (l *limiter) peek(key string, now time.Time) rateState {
	return l.state(l.prune(key, now), now)
}

// take counts a request for key when the window has room, and otherwise
// refuses it without counting it.
func (l *limiter) take(key string, now time.Time) (rateState, bool) {
	log := l.prune(key, now)
	if len(log) >= l.limit {
		st := l.state(log, now)
		st.retryAfter = ceilSeconds(st.reset.Sub(now))
		return st, false
	}
	log = append(log, now)
	l.seen[key] = log
	return l.state(log, now), true
}

// prune drops the requests that have left key's window and returns the rest.
func (l *limiter) prune(key string, now time.Time) []time.Time {
	log := l.seen[key]
	cut := now.Add(-ratePeriod)
	i := 0
	for i < len(log) && !log[i].After(cut) {
		i++
	}
	log = log[i:]
	l.seen[key] = log
	return log
}

func (l *limiter) state(log []time.Time, now time.Time) rateState {
	st := rateState{limit: l.limit, remaining: max(l.limit-len(log), 0), reset: now}
	if len(log) > 0 {
		st.reset = log[0].Add(ratePeriod)
	}
	return st
}

// setHeaders writes the X-RateLimit-* headers. Reset is rounded up, so a
// client that waits until then finds room.
func (st rateState) setHeaders(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(st.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(st.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(st.reset), 10))
}

// ceilSeconds rounds d up to whole seconds, and to at least one, as
// Retry-After cannot say "less than a second".
func ceilSeconds(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}

func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}
