package nouveltest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/nouvelhook/nouvelhook/store"
)

// maxGenerateBody bounds a generate request body.
const maxGenerateBody = 1 << 20

// generateRequest is Nouvel's generate body; fields it does not know are
// ignored, as Nouvel's docs list theirs with a trailing "…".
type generateRequest struct {
	URLs             []string `json:"urls"`
	VariantCount     *int     `json:"variantCount"`
	WebhookURL       string   `json:"webhookUrl"`
	UserInstructions string   `json:"userInstructions"`
	AspectRatio      string   `json:"aspectRatio"`
}

// generateAnswer is Nouvel's answer to a generate request that made a job.
type generateAnswer struct {
	JobID         string       `json:"jobId"`
	TotalProjects int          `json:"totalProjects"`
	Status        store.Status `json:"status"`
}

// handleGenerate makes a job of len(urls)*variantCount projects and answers
// 200 with its id. The job ends after Options.GeneratePolls polls.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var req generateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxGenerateBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return
	}
	if status, msg := validateGenerate(&req); status != 0 {
		writeError(w, status, msg)
		return
	}
	projects := len(req.URLs) * *req.VariantCount

	s.mu.Lock()
	id := s.addJobLocked(JobSpec{
		Outcome:    s.generateOutcomeLocked(projects),
		Polls:      s.opts.GeneratePolls,
		Projects:   projects,
		WebhookURL: req.WebhookURL,
	}, req.URLs, req.AspectRatio)
	s.mu.Unlock()

	writeJSON(w, http.StatusOK, generateAnswer{JobID: id, TotalProjects: projects, Status: store.StatusRunning})
}

// validateGenerate checks req as Nouvel does and fills in defaults. It
// returns 0 when req is fine, else the status and message to answer: 400
// for a malformed request, then 422 for a product URL that is not http(s).
func validateGenerate(req *generateRequest) (int, string) {
	if req.VariantCount == nil {
		one := 1
		req.VariantCount = &one
	}
	if req.AspectRatio == "" {
		req.AspectRatio = "9:16"
	}
	switch {
	case len(req.URLs) < 1 || len(req.URLs) > 3:
		return http.StatusBadRequest, "urls must hold 1 to 3 product URLs"
	case *req.VariantCount < 1 || *req.VariantCount > 3:
		return http.StatusBadRequest, "variantCount must be between 1 and 3"
	case req.AspectRatio != "9:16" && req.AspectRatio != "16:9" && req.AspectRatio != "1:1":
		return http.StatusBadRequest, "aspectRatio must be one of 9:16, 16:9, 1:1"
	}
	if req.WebhookURL != "" {
		if msg := checkWebhookURL(req.WebhookURL); msg != "" {
			return http.StatusBadRequest, msg
		}
	}
	for i, raw := range req.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return http.StatusUnprocessableEntity, fmt.Sprintf("urls[%d] is not a valid http(s) URL", i)
		}
	}
	return 0, ""
}

// checkWebhookURL returns why Nouvel would refuse raw as a webhookUrl, or ""
// if it would take it: it must be https and must not name localhost, a
// loopback or unspecified address, or a private network address.
func checkWebhookURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "webhookUrl must be an https URL"
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" {
		return "webhookUrl must not point at localhost"
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return ""
	case ip.Unmap().IsLoopback() || ip.IsUnspecified():
		return "webhookUrl must not point at localhost"
	case ip.Unmap().IsPrivate():
		return "webhookUrl must not point at a private network address"
	}
	return ""
}

// generateOutcomeLocked picks a generated job's outcome: Options.GenerateOutcome
// if set, else a draw (60% completed, 20% partial, 15% failed, 5%
// cancelled). A single project cannot end partial; it fails instead.
func (s *Server) generateOutcomeLocked(projects int) store.Status {
	outcome := s.opts.GenerateOutcome
	if outcome == "" {
		switch x := s.rand.Float64(); {
		case x < 0.60:
			outcome = store.StatusCompleted
		case x < 0.80:
			outcome = store.StatusPartial
		case x < 0.95:
			outcome = store.StatusFailed
		default:
			outcome = store.StatusCancelled
		}
	}
	if outcome == store.StatusPartial && projects < 2 {
		outcome = store.StatusFailed
	}
	return outcome
}

// newIDLocked makes an unused job id, alternating Nouvel's two forms: a
// cuid-like id and a UUID.
func (s *Server) newIDLocked() string {
	for {
		s.generated++
		var id string
		if s.generated%2 == 1 {
			id = s.cuidLocked()
		} else {
			id = s.uuidLocked()
		}
		if _, taken := s.jobs[id]; !taken {
			return id
		}
	}
}

func (s *Server) cuidLocked() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := []byte("c")
	for range 24 {
		b = append(b, alphabet[s.rand.IntN(len(alphabet))])
	}
	return string(b)
}

func (s *Server) uuidLocked() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(s.rand.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
