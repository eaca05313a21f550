package nouveltest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Nouvel's webhook timings, per its docs.
const (
	v1Timeout       = 5 * time.Second
	attemptsTimeout = 10 * time.Second
)

var defaultRetryDelays = []time.Duration{10 * time.Second, 60 * time.Second}

// Delivery is one webhook attempt, as Deliveries lists it.
type Delivery struct {
	Time    time.Time
	JobID   string
	Attempt int
	URL     string // the routed address posted to
	// Status is the receiver's answer; 0 when none came, and then Err says why.
	Status int
	Err    string
}

// webhookBody is the webhook's JSON. Its projects use store.Project, the
// very shape nouvelhook decodes.
type webhookBody struct {
	Event             string          `json:"event"`
	JobID             string          `json:"jobId"`
	Status            store.Status    `json:"status"`
	TotalProjects     int             `json:"totalProjects"`
	CompletedProjects int             `json:"completedProjects"`
	FailedProjects    int             `json:"failedProjects"`
	Projects          []store.Project `json:"projects"`
}

// outgoing is a webhook ready to send: serialized and signed once, so every
// attempt carries the same bytes.
type outgoing struct {
	jobID     string
	url       string
	body      []byte
	signature string
}

// Sign returns the X-Nouvel-Signature of body under secret: the lowercase
// hex HMAC-SHA256 of the exact bytes.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Deliveries lists every webhook attempt so far, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// WebhooksSent lists the jobs whose webhook was attempted at least once,
// whatever the receiver answered, in the order of their first attempt.
func (s *Server) WebhooksSent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

// WebhooksDropped lists the jobs that have ended with their webhook dropped
// on purpose (see Options.DropRate), in the order they ended.
func (s *Server) WebhooksDropped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dropped...)
}

// endedLocked is called on the poll that ends j. It returns the webhook to
// send, or nil when the job has none or it is dropped.
func (s *Server) endedLocked(j *job) *outgoing {
	if j.spec.WebhookURL == "" {
		return nil
	}
	if j.drop {
		j.dropped = true
		s.dropped = append(s.dropped, j.spec.ID)
		s.logf("nouveltest: job %s ended %s; webhook dropped", j.spec.ID, j.spec.Outcome)
		return nil
	}
	done, failed := j.counts()
	wb := webhookBody{
		Event: "job.completed", JobID: j.spec.ID, Status: j.spec.Outcome,
		TotalProjects: len(j.projects), CompletedProjects: done, FailedProjects: failed,
		Projects: make([]store.Project, 0, len(j.projects)),
	}
	for _, p := range j.projects {
		wb.Projects = append(wb.Projects, p.Project)
	}
	body, err := json.Marshal(wb)
	if err != nil {
		panic("nouveltest: webhook body: " + err.Error()) // strings and ints always marshal
	}
	return &outgoing{jobID: j.spec.ID, url: j.spec.WebhookURL, body: body, signature: Sign(s.opts.WebhookSecret, body)}
}

// deliver makes the first attempt at once. With Options.Attempts, failed
// attempts are retried in a goroutine that Close waits for.
func (s *Server) deliver(o *outgoing) {
	if s.attempt(o, 1) || !s.opts.Attempts {
		return
	}
	delays := s.opts.RetryDelays
	if delays == nil {
		delays = defaultRetryDelays
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i, d := range delays[:min(len(delays), 2)] {
			if !s.sleep(s.ctx, d) || s.attempt(o, i+2) {
				return
			}
		}
	}()
}

// attempt posts o once, records the attempt, and reports whether the
// receiver answered 2xx.
func (s *Server) attempt(o *outgoing, n int) bool {
	target := o.url
	if s.opts.RouteWebhook != nil {
		target = s.opts.RouteWebhook(o.url)
	}
	status, err := s.post(o, target, n)
	d := Delivery{JobID: o.jobID, Attempt: n, URL: target, Status: status}
	if err != nil {
		d.Err = err.Error()
	}
	ok := err == nil && status >= 200 && status <= 299
	s.logf("nouveltest: webhook for job %s, attempt %d: status %d %s", o.jobID, n, status, d.Err)

	s.mu.Lock()
	defer s.mu.Unlock()
	d.Time = s.opts.Now()
	s.deliveries = append(s.deliveries, d)
	if j := s.jobs[o.jobID]; j != nil {
		if j.attempts == 0 {
			s.sent = append(s.sent, o.jobID)
		}
		j.attempts++
		j.delivered = j.delivered || ok
	}
	return ok
}

// post sends one attempt to target, which must be a loopback address.
func (s *Server) post(o *outgoing, target string, n int) (int, error) {
	if err := checkLoopback(target); err != nil {
		return 0, err
	}
	timeout := s.opts.WebhookTimeout
	switch {
	case timeout > 0:
	case s.opts.Attempts:
		timeout = attemptsTimeout
	default:
		timeout = v1Timeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(o.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nouvel-Signature", o.signature)
	if s.opts.Attempts {
		req.Header.Set("X-Nouvel-Attempt", strconv.Itoa(n))
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.StatusCode, nil
}

// checkLoopback refuses any address but localhost and loopback IPs, so the
// stand-in can never send traffic off the machine, whatever a job says.
func checkLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("nouveltest: refusing to send a webhook to %q: not a loopback address (set Options.RouteWebhook)", host)
}
