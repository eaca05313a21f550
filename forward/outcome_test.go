package forward

import (
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func testForwarder(t *testing.T, schedule ...time.Duration) *Forwarder {
	t.Helper()
	f, err := New(Options{Store: nilStore{}, URL: "https://user:pw@app.example/hooks/nouvel?token=s3cret#x",
		Schedule: schedule, Timeout: 15 * time.Second, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// nilStore satisfies store.Store for the tests that only judge answers;
// calling any method panics.
type nilStore struct{ store.Store }

// TestJudge: what each answer makes of the forward.
func TestJudge(t *testing.T) {
	f := testForwarder(t, time.Minute, 5*time.Minute, 30*time.Minute)
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	httpDate := at.Add(20 * time.Minute).Format(http.TimeFormat)
	for _, c := range []struct {
		name    string
		a       answer
		attempt int
		jitter  float64
		state   store.ForwardState
		wait    time.Duration // from at, for pending
		errHas  string
	}{
		{"200", answer{status: 200}, 1, 0.5, store.ForwardDelivered, 0, ""},
		{"204 on the last attempt", answer{status: 204}, 4, 0.5, store.ForwardDelivered, 0, ""},
		{"299", answer{status: 299}, 2, 0.5, store.ForwardDelivered, 0, ""},
		{"410 pauses", answer{status: 410, statusText: "Gone"}, 1, 0.5, store.ForwardPaused, 0,
			"the app answered 410 Gone at https://app.example/hooks/nouvel"},
		{"410 on the last attempt still pauses", answer{status: 410}, 4, 0.5, store.ForwardPaused, 0, "410"},
		{"500, jitter low", answer{status: 500, statusText: "Internal Server Error"}, 1, 0, store.ForwardPending,
			48 * time.Second, "the app answered 500 Internal Server Error"},
		{"500, jitter mid", answer{status: 500}, 2, 0.5, store.ForwardPending, 5 * time.Minute, "500"},
		{"500, jitter high", answer{status: 500}, 3, 0.999999, store.ForwardPending, 36 * time.Minute, "500"},
		{"500 after the last step", answer{status: 500}, 4, 0.5, store.ForwardFailed, 0, "500"},
		{"301", answer{status: 301, statusText: "Moved Permanently"}, 1, 0.5, store.ForwardPending, time.Minute,
			"redirects are not followed"},
		{"400", answer{status: 400}, 1, 0.5, store.ForwardPending, time.Minute, "400"},
		{"599 with no name", answer{status: 599}, 1, 0.5, store.ForwardPending, time.Minute, "the app answered 599"},
		{"refused", answer{err: syscall.ECONNREFUSED}, 1, 0.5, store.ForwardPending, time.Minute, "connection refused"},
		{"timeout", answer{err: errors.New("context deadline exceeded"), timedOut: true}, 2, 0.5, store.ForwardPending,
			5 * time.Minute, "no answer within 15s"},
		{"429, Retry-After shorter than the step", answer{status: 429, retryAfter: "30"}, 1, 0.5,
			store.ForwardPending, time.Minute, "429"},
		{"429, Retry-After longer", answer{status: 429, retryAfter: "120"}, 1, 0.5, store.ForwardPending,
			2 * time.Minute, "429"},
		{"429, Retry-After past the jittered wait, within the step", answer{status: 429, retryAfter: "55"}, 1, 0,
			store.ForwardPending, 55 * time.Second, "429"},
		{"503, Retry-After within the jittered wait", answer{status: 503, retryAfter: "50"}, 1, 0.5,
			store.ForwardPending, time.Minute, "503"},
		{"429, Retry-After capped at the step after", answer{status: 429, retryAfter: "3600"}, 1, 0.5,
			store.ForwardPending, 5 * time.Minute, "429"},
		{"503, Retry-After as an HTTP date", answer{status: 503, retryAfter: httpDate}, 2, 0.5,
			store.ForwardPending, 20 * time.Minute, "503"},
		{"429 on the last step: capped at the last step", answer{status: 429, retryAfter: "7200"}, 3, 0.5,
			store.ForwardPending, 30 * time.Minute, "429"},
		{"429 after the last step", answer{status: 429, retryAfter: "1"}, 4, 0.5, store.ForwardFailed, 0, "429"},
		{"500 with Retry-After: ignored", answer{status: 500, retryAfter: "240"}, 1, 0.5, store.ForwardPending,
			time.Minute, "500"},
		{"429 with an unreadable Retry-After", answer{status: 429, retryAfter: "soon"}, 1, 0.5,
			store.ForwardPending, time.Minute, "429"},
	} {
		r := f.judge(c.a, c.attempt, at, c.jitter)
		if r.State != c.state || r.At != at {
			t.Errorf("%s: got state %s at %s, want %s at %s", c.name, r.State, r.At, c.state, at)
		}
		var wantNext time.Time
		if c.state == store.ForwardPending {
			wantNext = at.Add(c.wait)
		}
		if d := r.Next.Sub(wantNext); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: got next %s, want %s", c.name, r.Next, wantNext)
		}
		if c.errHas == "" && r.Err != "" || !strings.Contains(r.Err, c.errHas) {
			t.Errorf("%s: got error %q, want one with %q", c.name, r.Err, c.errHas)
		}
		if strings.Contains(r.Err, "s3cret") || strings.Contains(r.Err, "pw@") || strings.HasSuffix(r.Err, " ") {
			t.Errorf("%s: error %q shows the URL's secret", c.name, r.Err)
		}
		if r.Status != c.a.status {
			t.Errorf("%s: got status %d, want %d", c.name, r.Status, c.a.status)
		}
	}
}

// TestJitterBounds: a retry's wait stays within ±20% of its step, and
// spreads over that range.
func TestJitterBounds(t *testing.T) {
	for _, c := range []struct {
		r    float64
		want time.Duration
	}{{0, 80 * time.Second}, {0.5, 100 * time.Second}, {0.25, 90 * time.Second}} {
		if got := jittered(100*time.Second, c.r); got != c.want {
			t.Errorf("jittered(100s, %v): got %s, want %s", c.r, got, c.want)
		}
	}
	if got := jittered(100*time.Second, 0.9999999999); got >= 120*time.Second || got < 119*time.Second {
		t.Errorf("jittered(100s, ~1): got %s, want just under 2m0s", got)
	}
}

// TestParseRetryAfter: seconds or an HTTP date, from now; nothing for the
// rest.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"90", 90 * time.Second}, {" 7 ", 7 * time.Second},
		{now.Add(3 * time.Minute).Format(http.TimeFormat), 3 * time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"Fri, 27 Nov 2026 12:00:30 GMT", 30 * time.Second},
		{"tomorrow", 0}, {"1.5", 0},
		{"99999999999999999", (1 << 33) * time.Second},
	} {
		if got := parseRetryAfter(c.v, now); got != c.want {
			t.Errorf("parseRetryAfter(%q): got %s, want %s", c.v, got, c.want)
		}
	}
}

// TestNewRefuses: each bad option is one line naming it, without the
// URL's secrets.
func TestNewRefuses(t *testing.T) {
	ok := Options{Store: nilStore{}, URL: "https://app.example/h", Schedule: []time.Duration{time.Second},
		Timeout: time.Second, Concurrency: 1}
	for _, c := range []struct {
		name   string
		change func(*Options)
		errHas string
	}{
		{"no store", func(o *Options) { o.Store = nil }, "no store"},
		{"relative URL", func(o *Options) { o.URL = "/hooks?token=s3cret" }, `URL "/hooks" is not`},
		{"ftp URL", func(o *Options) { o.URL = "ftp://u:s3cret@app.example/h" }, `URL "ftp://app.example/h" is not`},
		{"no host", func(o *Options) { o.URL = "https:///h" }, "URL"},
		{"unreadable URL", func(o *Options) { o.URL = "https://app.example/%zz?s3cret" }, "unreadable"},
		{"no schedule", func(o *Options) { o.Schedule = nil }, "schedule"},
		{"zero step", func(o *Options) { o.Schedule = []time.Duration{time.Second, 0} }, "step 2"},
		{"zero timeout", func(o *Options) { o.Timeout = 0 }, "timeout"},
		{"zero concurrency", func(o *Options) { o.Concurrency = 0 }, "concurrency"},
	} {
		o := ok
		c.change(&o)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), c.errHas) || strings.Contains(err.Error(), "s3cret") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line with %q and no secret", c.name, err, c.errHas)
		}
	}
	if _, err := New(ok); err != nil {
		t.Fatalf("good options: %v", err)
	}
}
