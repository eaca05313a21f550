// Package nouveltest is a stand-in for Nouvel's API that behaves as Nouvel's
// public docs describe: bearer keys, a per-key sliding rate limit, jobs that
// move forward only when polled, and signed webhooks sent during the poll
// that finds a job ended, some of them dropped on purpose. Tests use it as a
// fake upstream and `nouvelhook demo` uses it as a sandbox.
//
// It listens on 127.0.0.1 only and sends webhooks to loopback addresses
// only; a webhook whose routed address is anything else is recorded as a
// failed attempt and never dialled.
package nouveltest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Options configure a Server. The zero value is usable: no key required,
// no webhook secret, nothing dropped, docs-v1 webhooks, 60 requests a minute.
type Options struct {
	// APIKey is the one bearer key accepted; empty accepts any request.
	APIKey string
	// WebhookSecret signs webhooks (HMAC-SHA256, lowercase hex).
	WebhookSecret string
	// DropRate is the share of jobs, 0 to 1, whose webhook is never sent.
	DropRate float64
	// Seed seeds the random source behind drops, generated ids and
	// generated outcomes, so a run can be repeated.
	Seed int64
	// Now is the clock for rate limiting and timestamps; nil is time.Now.
	// Delays (faults, webhook retries and timeouts) use real time.
	Now func() time.Time
	// RouteWebhook maps a job's public webhookUrl to the URL actually
	// posted to, standing in for DNS and ingress. nil is the identity.
	RouteWebhook func(webhookURL string) string
	// Attempts selects the later docs' webhooks: up to three attempts with
	// an X-Nouvel-Attempt header and a 10 s timeout. false is docs v1: one
	// attempt, a 5 s timeout and no attempt header.
	Attempts bool
	// RetryDelays are the waits before attempts 2 and 3 when Attempts is
	// set; nil is Nouvel's 10 s and 60 s.
	RetryDelays []time.Duration
	// WebhookTimeout overrides the per-attempt timeout (5 s or 10 s).
	WebhookTimeout time.Duration
	// HTTPClient sends webhooks; nil is a client that follows no redirects.
	HTTPClient *http.Client
	// RateLimit is the number of requests per minute per key; 0 is 60.
	RateLimit int
	// GeneratePolls is how many polls a generated job needs to end; 0 is 3.
	GeneratePolls int
	// GenerateOutcome fixes the outcome of generated jobs; "" draws one
	// from the seeded source.
	GenerateOutcome store.Status
	// Logf, when set, receives one line per webhook attempt, drop and fault.
	Logf func(format string, args ...any)
}

// Request is one request the Server received, as Requests lists it.
type Request struct {
	Time   time.Time
	Method string
	Path   string
	// JobID is the job a GET /api/v1/jobs/{jobId} named; "" otherwise.
	JobID string
	// Status is the status answered; 0 when the client went away first.
	Status int
	// End is when the answer was done, so that a test can tell whether two
	// requests for one job overlapped.
	End time.Time
}

// Server is a running stand-in for Nouvel. Its methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	srv    *http.Server
	url    string
	ctx    context.Context // cancelled by Close; ends sleeps and webhooks
	cancel context.CancelFunc
	wg     sync.WaitGroup // webhook retry goroutines
	once   sync.Once

	mu         sync.Mutex
	rand       *rand.Rand
	jobs       map[string]*job
	limiter    limiter
	faults     []Fault
	authStatus int
	requests   []Request
	deliveries []Delivery
	sent       []string
	dropped    []string
	generated  int
}

// New starts a Server on 127.0.0.1 at a free port. Close it when done. It
// panics on a GenerateOutcome that is not a terminal Nouvel status.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect could lead off loopback
		}}
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 60
	}
	if opts.GenerateOutcome != "" {
		normalize(JobSpec{Outcome: opts.GenerateOutcome}) // a bad one panics here, not in a handler
	}
	if opts.GeneratePolls <= 0 {
		opts.GeneratePolls = 3
	}
	s := &Server{
		opts:    opts,
		rand:    rand.New(rand.NewPCG(uint64(opts.Seed), 0x6e6f7576656c)),
		jobs:    make(map[string]*job),
		limiter: newLimiter(opts.RateLimit),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// A plain http.Server rather than httptest's: the demo ships this
	// package in the binary, and test fakes stay out of it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("nouveltest: listen on loopback: %v", err))
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s
}

// URL is the Server's base URL, such as http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// Close stops the Server: it ends sleeping faults and webhooks in flight,
// waits for requests in progress and webhook retries to finish, and frees
// the port. It may be called more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel()
		// Shutdown returns once every handler has: after it none can start a
		// retry goroutine.
		s.srv.Shutdown(context.Background())
		s.wg.Wait()
	})
}

// SetAuthStatus makes every request answer code (401 or 403) from now on,
// as if the key had been revoked or lost a permission; 0 restores normal
// authentication.
func (s *Server) SetAuthStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authStatus = code
}

// Requests lists every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

const jobsPrefix = "/api/v1/jobs/"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/generate", s.handleGenerate)
	mux.HandleFunc(jobsPrefix+"{jobId}", s.handleGetJob)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "Not found")
	})
	return s.gate(mux)
}

// gate records every request and runs admit before routing it.
func (s *Server) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		jobID, _ := strings.CutPrefix(r.URL.Path, jobsPrefix)
		req := Request{Time: s.opts.Now(), Method: r.Method, Path: r.URL.Path, JobID: jobID}
		if s.admit(rec, r, jobID) {
			next.ServeHTTP(rec, r)
		}
		req.Status, req.End = rec.status, s.opts.Now()
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
	})
}

// admit does what Nouvel does before routing: an injected fault, the rate
// limit, then authentication. It answers and reports false when the request
// goes no further. Every answer it lets through carries the rate headers.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, jobID string) bool {
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	f := s.takeFaultLocked(jobID)
	s.mu.Unlock()
	if f.Status != 0 || f.Delay > 0 {
		s.logf("nouveltest: fault on %s %s: status %d, delay %s", r.Method, r.URL.Path, f.Status, f.Delay)
	}
	if f.Delay > 0 && !s.sleep(r.Context(), f.Delay) {
		return false
	}

	s.mu.Lock()
	now := s.opts.Now()
	st, ok := s.limiter.peek(key, now), true
	if f.Status != http.StatusTooManyRequests {
		st, ok = s.limiter.take(key, now)
	}
	authStatus := s.authStatus
	s.mu.Unlock()

	st.setHeaders(w.Header())
	switch {
	case f.Status == http.StatusTooManyRequests:
		writeRateLimited(w, ceilSeconds(f.RetryAfter), s.opts.RateLimit)
	case !ok:
		writeRateLimited(w, st.retryAfter, s.opts.RateLimit)
	case f.Status != 0:
		writeError(w, f.Status, http.StatusText(f.Status))
	case authStatus != 0:
		writeError(w, authStatus, http.StatusText(authStatus))
	case s.opts.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1:
		writeError(w, http.StatusUnauthorized, "Unauthorized")
	default:
		return true
	}
	return false
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// recorder remembers the status a handler answered.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// allowMethod answers 405 and reports false unless r uses method.
func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeRateLimited(w http.ResponseWriter, retryAfter time.Duration, limit int) {
	secs := int(retryAfter / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"error":      "Rate limit exceeded",
		"reason":     strconv.Itoa(limit) + " requests per minute per API key",
		"retryAfter": secs,
	})
}
