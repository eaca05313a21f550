package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nouvelhook/nouvelhook/store"
)

// SignatureHeader carries the lowercase hex HMAC-SHA256 of the raw body.
const SignatureHeader = "X-Nouvel-Signature"

// AttemptHeader carries the delivery attempt (1, 2 or 3) in later revisions
// of Nouvel's webhooks.
const AttemptHeader = "X-Nouvel-Attempt"

// Verifier checks webhook signatures against one or more shared secrets, so
// a secret can be rotated without dropping deliveries.
type Verifier struct {
	secrets [][]byte
}

// NewVerifier returns a Verifier that accepts a signature made with any of
// secrets.
func NewVerifier(secrets []string) *Verifier {
	v := &Verifier{}
	for _, s := range secrets {
		v.secrets = append(v.secrets, []byte(s))
	}
	return v
}

// WellFormedSignature reports whether sig has the shape of a signature, 64
// hex digits, so that a request without one is refused before its body is
// read.
func WellFormedSignature(sig string) bool {
	if len(sig) != hex.EncodedLen(sha256.Size) {
		return false
	}
	for i := range len(sig) {
		if c := sig[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Verify reports whether sig is the hex HMAC-SHA256 of exactly body under one
// of the secrets. Anything malformed is simply false.
func (v *Verifier) Verify(body []byte, sig string) bool {
	if !WellFormedSignature(sig) {
		return false
	}
	want := make([]byte, sha256.Size)
	if _, err := hex.Decode(want, []byte(sig)); err != nil {
		return false
	}
	for _, secret := range v.secrets {
		if hmac.Equal(Sign(secret, body), want) {
			return true
		}
	}
	return false
}

// Sign returns the HMAC-SHA256 of body under secret.
func Sign(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}

// event is the webhook body Nouvel sends.
type event struct {
	Event             string          `json:"event"`
	JobID             *string         `json:"jobId"`
	Status            store.Status    `json:"status"`
	TotalProjects     int             `json:"totalProjects"`
	CompletedProjects int             `json:"completedProjects"`
	FailedProjects    int             `json:"failedProjects"`
	Projects          []store.Project `json:"projects"`
}

// ParseEvent turns a verified webhook body into a terminal report. When the
// body is not a usable event it returns an error saying why, and the job id
// the body names, if it names a valid one.
func ParseEvent(body []byte) (*store.Report, string, error) {
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, "", fmt.Errorf("body is not a JSON webhook event: %w", err)
	}
	if ev.JobID == nil || *ev.JobID == "" {
		return nil, "", errors.New("jobId is missing")
	}
	id := *ev.JobID
	if len(id) > 128 {
		return nil, "", errors.New("jobId is longer than 128 bytes")
	}
	if !store.ValidJobID(id) {
		return nil, "", errors.New("jobId may hold only letters, digits, '-' and '_'")
	}
	if !ev.Status.Terminal() || ev.Status.Local() {
		return nil, id, fmt.Errorf("status %q is not completed, partial, failed or cancelled", ev.Status)
	}
	if ev.TotalProjects < 0 || ev.CompletedProjects < 0 || ev.FailedProjects < 0 {
		return nil, id, errors.New("project counts must not be negative")
	}
	return &store.Report{
		JobID: id, Status: ev.Status, TotalProjects: ev.TotalProjects,
		CompletedProjects: ev.CompletedProjects, FailedProjects: ev.FailedProjects,
		Projects: ev.Projects, Progress: 100,
	}, id, nil
}
