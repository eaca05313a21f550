package forward

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// jitterSpread is how far a retry's wait strays from its step either way:
// forwards that failed together do not all come back together.
const jitterSpread = 0.2

// answer is what one attempt got back from the app.
type answer struct {
	// status is the app's HTTP status; 0 when there was no answer.
	status int
	// statusText is the status line's reason, when there was one.
	statusText string
	// retryAfter is the Retry-After header as sent.
	retryAfter string
	// err is why there was no answer: refused, reset, timed out.
	err error
	// timedOut is set when err is the attempt's timeout.
	timedOut bool
}

// statusLine is the status as "503 Service Unavailable", or the bare code
// when it has no name.
func (a answer) statusLine() string {
	return strings.TrimSpace(fmt.Sprintf("%d %s", a.status, a.statusText))
}

// judge turns an attempt's answer into what the forward becomes: delivered
// on a 2xx; paused on a 410; otherwise pending until the schedule's next
// step, or failed past the last one. jitter is a uniform draw in [0, 1).
func (f *Forwarder) judge(a answer, attempt int, at time.Time, jitter float64) store.ForwardResult {
	r := store.ForwardResult{At: at, Status: a.status}
	switch {
	case a.err == nil && a.status >= 200 && a.status <= 299:
		r.State = store.ForwardDelivered
		return r
	case a.err == nil && a.status == http.StatusGone:
		r.State = store.ForwardPaused
		r.Err = "the app answered 410 Gone at " + f.shownURL
		return r
	case a.timedOut:
		r.Err = fmt.Sprintf("no answer within %s (NOUVELHOOK_FORWARD_TIMEOUT)", f.opts.Timeout)
	case a.err != nil:
		r.Err = "no answer: " + a.err.Error()
	case a.status >= 300 && a.status <= 399:
		r.Err = "the app answered " + a.statusLine() + "; redirects are not followed"
	default:
		r.Err = "the app answered " + a.statusLine()
	}
	var ra time.Duration
	if a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable {
		ra = parseRetryAfter(a.retryAfter, at)
	}
	wait, ok := retryWait(f.opts.Schedule, attempt, jitter, ra)
	if !ok {
		r.State = store.ForwardFailed
		return r
	}
	r.State, r.Next = store.ForwardPending, at.Add(wait)
	return r
}

// retryWait is how long to wait after the attempt-th attempt failed: its
// step of the schedule with jitter, or, when the app's Retry-After is
// longer than that, the Retry-After capped at the step after (the last step
// when there is none after). A Retry-After longer than the jittered wait
// but within the step counts too: the app is not asked again before it
// said. ok is false past the last step.
func retryWait(schedule []time.Duration, attempt int, jitter float64, retryAfter time.Duration) (wait time.Duration, ok bool) {
	if attempt < 1 || attempt > len(schedule) {
		return 0, false
	}
	wait = jittered(schedule[attempt-1], jitter)
	limit := schedule[len(schedule)-1]
	if attempt < len(schedule) {
		limit = schedule[attempt]
	}
	return max(wait, min(retryAfter, limit)), true
}

// jittered is d moved by up to jitterSpread of itself either way, for a
// uniform draw r in [0, 1).
func jittered(d time.Duration, r float64) time.Duration {
	return time.Duration(float64(d) * (1 - jitterSpread + 2*jitterSpread*r))
}

// parseRetryAfter reads a Retry-After header, delay-seconds or an HTTP
// date, as a wait from now; 0 when absent, unreadable or past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		// Past about 290 years a Duration overflows; no step is that long.
		return time.Duration(min(n, int64(1<<33))) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil || !t.After(now) {
		return 0
	}
	return t.Sub(now)
}

// outcome is the nouvelhook_forwards_total label of a result.
func outcome(s store.ForwardState) string {
	if s == store.ForwardPending {
		return "retry"
	}
	return string(s)
}

// transportError is err without the request's URL, whose query or user
// info may hold a secret of the app's.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// showURL is u as logs and reasons show it: without user info, query or
// fragment, which may hold secrets.
func showURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}
