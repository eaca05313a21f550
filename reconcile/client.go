package reconcile

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Errors returned by Client. Callers match them with errors.Is; an *APIError
// matches exactly one of the first seven, chosen by its HTTP status.
var (
	// ErrInvalid means Nouvel refused the request as malformed (400 or 422),
	// or the client refused to send it (an empty or unusable job id).
	// Repeating the same request will not help.
	ErrInvalid = errors.New("nouvel: invalid request")
	// ErrUnauthorized means Nouvel refused the API key (401). Nothing will
	// work until the key is replaced.
	ErrUnauthorized = errors.New("nouvel: unauthorized")
	// ErrQuota means the account has no credits left for generation (402).
	ErrQuota = errors.New("nouvel: quota exhausted")
	// ErrForbidden means the key lacks the permission the call needs (403),
	// such as projects:read for GetJob.
	ErrForbidden = errors.New("nouvel: forbidden")
	// ErrNotFound means Nouvel does not know the job (404).
	ErrNotFound = errors.New("nouvel: not found")
	// ErrRateLimited means the key's request budget is spent (429). The
	// *APIError's RetryAfter says how long to wait.
	ErrRateLimited = errors.New("nouvel: rate limited")
	// ErrServer means Nouvel failed (5xx) or answered a status this client
	// does not expect, redirects included. Retrying later may help.
	ErrServer = errors.New("nouvel: server error")
	// ErrTransport means no usable answer arrived: the connection failed or
	// timed out, or a 2xx answer was not the JSON promised. Retrying may help;
	// for Generate the job may nevertheless exist.
	ErrTransport = errors.New("nouvel: transport error")
)

const (
	// maxErrorBody bounds how much of an error answer is read for its message.
	maxErrorBody = 64 << 10
	// maxAnswerBody bounds a 2xx answer; a job with nine projects and their
	// scripts is far below it.
	maxAnswerBody = 4 << 20
	// defaultTimeout is the whole-request timeout of the default HTTP client.
	defaultTimeout = 15 * time.Second
)

// Client calls Nouvel's REST API with one API key. It is safe for concurrent
// use. Its errors never contain the key.
type Client struct {
	base string
	key  string
	hc   *http.Client
}

// NewClient returns a Client for the API rooted at baseURL (such as
// https://app.nouvel.ai) that authenticates with apiKey. A nil httpClient is
// replaced by one with a 15 s timeout that does not follow redirects, so the
// key is never sent anywhere but baseURL.
func NewClient(baseURL, apiKey string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{
			Timeout: defaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), key: apiKey, hc: httpClient}
}

// String describes the client without its key, so that printing a Client
// with %v or %+v cannot leak it.
func (c *Client) String() string { return "reconcile.Client{" + c.base + "}" }

// RateInfo is what an answer's X-RateLimit-* headers say about the key's
// budget. Known is false when the answer carried no usable Limit and
// Remaining; Reset is zero when X-RateLimit-Reset was missing.
type RateInfo struct {
	Limit     int
	Remaining int
	Reset     time.Time
	Known     bool
}

// APIError is a non-2xx answer from Nouvel. errors.Is maps it onto the
// sentinel for its status: ErrInvalid, ErrUnauthorized, ErrQuota,
// ErrForbidden, ErrNotFound, ErrRateLimited, or ErrServer for anything else.
type APIError struct {
	// Status is the HTTP status Nouvel answered.
	Status int
	// Message is Nouvel's own "error" text, with its "reason" after a colon
	// when present, or the status text when the body had neither. It is safe
	// to show to the user who made the request.
	Message string
	// RetryAfter is how long Nouvel asked to wait (Retry-After header, or the
	// body's retryAfter); zero when it did not say.
	RetryAfter time.Duration
}

// Error reports the status and Nouvel's message.
func (e *APIError) Error() string {
	s := fmt.Sprintf("nouvel answered %d: %s", e.Status, e.Message)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Is reports whether target is the sentinel error for e's status.
func (e *APIError) Is(target error) bool { return target == sentinelFor(e.Status) }

func sentinelFor(status int) error {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return ErrInvalid
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusPaymentRequired:
		return ErrQuota
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	return ErrServer
}

// Retryable reports whether the same request may succeed later: true for
// ErrServer, ErrRateLimited and ErrTransport, except when the caller's own
// context was cancelled.
func Retryable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	}
	return errors.Is(err, ErrServer) || errors.Is(err, ErrRateLimited) || errors.Is(err, ErrTransport)
}

// JobStatus is Nouvel's answer to GET /api/v1/jobs/{jobId}.
type JobStatus struct {
	JobID             string            `json:"jobId"`
	Status            store.Status      `json:"status"`
	OverallProgress   float64           `json:"overallProgress"`
	Stage             string            `json:"stage"`
	TotalProjects     int               `json:"totalProjects"`
	CompletedProjects int               `json:"completedProjects"`
	FailedProjects    int               `json:"failedProjects"`
	Projects          []JobProject      `json:"projects"`
	CompletedDetails  []CompletedDetail `json:"completedDetails"`
}

// JobProject is one entry of a job answer's projects list.
type JobProject struct {
	ID       string       `json:"id"`
	Title    string       `json:"title"`
	Status   store.Status `json:"status"`
	Progress float64      `json:"progress"`
}

// CompletedDetail is one entry of a terminal job answer's completedDetails.
// Script is kept raw because Nouvel's docs do not fix its type, and a
// surprise there must not make the whole answer unreadable.
type CompletedDetail struct {
	ProjectID       string          `json:"projectId"`
	Title           string          `json:"title"`
	URL             string          `json:"url"`
	FinalOutputURL  string          `json:"finalOutputUrl"`
	Status          store.Status    `json:"status"`
	AspectRatio     string          `json:"aspectRatio"`
	DurationSeconds float64         `json:"durationSeconds"`
	SceneCount      int             `json:"sceneCount"`
	Script          json.RawMessage `json:"script,omitempty"`
	Description     string          `json:"description"`
}

// GenerateResult is the part of Nouvel's generate answer nouvelhook uses.
type GenerateResult struct {
	JobID         string       `json:"jobId"`
	TotalProjects int          `json:"totalProjects"`
	Status        store.Status `json:"status"`
}

// GetJob fetches a job's state. jobID must pass store.ValidJobID, else the
// error wraps ErrInvalid and nothing is sent. A 2xx answer that is not a job
// of a known status, or is about another job, wraps ErrTransport. RateInfo is
// filled from every answer, errors included.
func (c *Client) GetJob(ctx context.Context, jobID string) (JobStatus, RateInfo, error) {
	if !store.ValidJobID(jobID) {
		return JobStatus{}, RateInfo{}, fmt.Errorf("%w: unusable job id %q", ErrInvalid, jobID)
	}
	path := "/api/v1/jobs/" + url.PathEscape(jobID)
	body, rate, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return JobStatus{}, rate, err
	}
	var js JobStatus
	if err := json.Unmarshal(body, &js); err != nil {
		return JobStatus{}, rate, fmt.Errorf("%w: GET %s: bad JSON: %v", ErrTransport, path, err)
	}
	if js.JobID == "" {
		js.JobID = jobID
	}
	switch {
	case js.JobID != jobID:
		return JobStatus{}, rate, fmt.Errorf("%w: GET %s: answer is about job %q", ErrTransport, path, js.JobID)
	case !js.Status.Nouvel():
		return JobStatus{}, rate, fmt.Errorf("%w: GET %s: unexpected job status %q", ErrTransport, path, js.Status)
	}
	return js, rate, nil
}

// Generate submits a generate request body unchanged and returns Nouvel's
// 2xx answer unchanged, so it can be passed back to whoever asked. The answer
// has been checked with ParseGenerate; if that fails the error wraps
// ErrTransport and the raw answer is still returned. A transport error here is
// ambiguous: the job may exist, so do not resubmit blindly.
func (c *Client) Generate(ctx context.Context, body []byte) (json.RawMessage, RateInfo, error) {
	raw, rate, err := c.do(ctx, http.MethodPost, "/api/v1/generate", body)
	if err != nil {
		return nil, rate, err
	}
	if _, err := ParseGenerate(raw); err != nil {
		return raw, rate, err
	}
	return raw, rate, nil
}

// ParseGenerate reads a generate answer. An answer that is not JSON or has no
// usable jobId wraps ErrTransport.
func ParseGenerate(raw json.RawMessage) (GenerateResult, error) {
	var g GenerateResult
	if err := json.Unmarshal(raw, &g); err != nil {
		return GenerateResult{}, fmt.Errorf("%w: generate answer: bad JSON: %v", ErrTransport, err)
	}
	if !store.ValidJobID(g.JobID) {
		return GenerateResult{}, fmt.Errorf("%w: generate answer has no usable jobId", ErrTransport)
	}
	return g, nil
}

// Report maps a job answer onto the record a webhook for the same job
// produces: one store.Project per entry of projects, in that order, with the
// video URL from the matching completedDetails entry; details without a
// matching project are appended. Progress is 100 once terminal, else
// overallProgress rounded and clamped to 0..100. Projects is never nil.
func (j JobStatus) Report() store.Report {
	r := store.Report{
		JobID:             j.JobID,
		Status:            j.Status,
		TotalProjects:     j.TotalProjects,
		CompletedProjects: j.CompletedProjects,
		FailedProjects:    j.FailedProjects,
		Stage:             j.Stage,
		Progress:          clampProgress(j.OverallProgress),
		Projects:          make([]store.Project, 0, len(j.Projects)),
	}
	if j.Status.Terminal() {
		r.Progress = 100
	}
	details := make(map[string]CompletedDetail, len(j.CompletedDetails))
	for _, d := range j.CompletedDetails {
		if _, dup := details[d.ProjectID]; !dup {
			details[d.ProjectID] = d
		}
	}
	for _, p := range j.Projects {
		d, ok := details[p.ID]
		delete(details, p.ID)
		sp := store.Project{ProjectID: p.ID, Title: p.Title, Status: p.Status, VideoURL: d.FinalOutputURL}
		if ok {
			sp.Title = cmp.Or(sp.Title, d.Title)
			sp.Status = cmp.Or(sp.Status, d.Status)
		}
		r.Projects = append(r.Projects, sp)
	}
	for _, d := range j.CompletedDetails {
		if _, left := details[d.ProjectID]; left {
			delete(details, d.ProjectID)
			r.Projects = append(r.Projects, store.Project{
				ProjectID: d.ProjectID, Title: d.Title, Status: d.Status, VideoURL: d.FinalOutputURL,
			})
		}
	}
	return r
}

func clampProgress(p float64) int {
	if math.IsNaN(p) {
		return 0
	}
	return int(math.Round(math.Min(100, math.Max(0, p))))
}

// do sends one request and returns a 2xx answer's body, or an *APIError or
// an ErrTransport error. RateInfo comes from whatever answer arrived.
func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, RateInfo, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, RateInfo{}, fmt.Errorf("%w: %s %s: %v", ErrInvalid, method, path, c.redact(err.Error()))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, RateInfo{}, c.transportErr(method, path, err)
	}
	defer resp.Body.Close()
	rate := parseRate(resp.Header)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, rate, c.apiError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody+1))
	switch {
	case err != nil:
		return nil, rate, c.transportErr(method, path, err)
	case len(data) > maxAnswerBody:
		return nil, rate, fmt.Errorf("%w: %s %s: answer over %d bytes", ErrTransport, method, path, maxAnswerBody)
	}
	return data, rate, nil
}

// transportErr wraps both ErrTransport and the cause, so that callers can
// still see context.Canceled or a timeout through errors.Is.
func (c *Client) transportErr(method, path string, err error) error {
	if c.key != "" && strings.Contains(err.Error(), c.key) {
		err = errors.New(c.redact(err.Error()))
	}
	return fmt.Errorf("%w: %s %s: %w", ErrTransport, method, path, err)
}

// redact removes the key from text that came from elsewhere, such as an
// error message that echoes the Authorization header.
func (c *Client) redact(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

// apiError builds an *APIError from a non-2xx answer, reading at most
// maxErrorBody bytes of it.
func (c *Client) apiError(resp *http.Response) *APIError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Error      string   `json:"error"`
		Reason     string   `json:"reason"`
		RetryAfter *float64 `json:"retryAfter"`
	}
	_ = json.Unmarshal(data, &body) // a non-JSON error page still has a status
	msg := body.Error
	if body.Reason != "" && msg != "" {
		msg += ": " + body.Reason
	}
	e := &APIError{Status: resp.StatusCode, Message: c.redact(cmp.Or(msg, body.Reason,
		http.StatusText(resp.StatusCode), "unexpected status"))}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After")); ok {
		e.RetryAfter = d
	} else if body.RetryAfter != nil && *body.RetryAfter > 0 {
		e.RetryAfter = time.Duration(math.Ceil(*body.RetryAfter)) * time.Second
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay seconds, or an HTTP date.
func parseRetryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0).Round(time.Second), true
	}
	return 0, false
}

func parseRate(h http.Header) RateInfo {
	var r RateInfo
	limit, errL := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Limit")))
	remaining, errR := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if errL == nil && errR == nil {
		r.Limit, r.Remaining, r.Known = limit, remaining, true
	}
	if reset, err := strconv.ParseFloat(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 64); err == nil && reset > 0 {
		r.Reset = time.Unix(int64(math.Ceil(reset)), 0)
	}
	return r
}
