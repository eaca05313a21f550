package forward

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
)

// Header names a forward carries.
const (
	// HeaderNouvelSignature is Nouvel's own signature header, so the app's
	// existing check of Nouvel's webhooks works unchanged.
	HeaderNouvelSignature = "X-Nouvel-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature
	// are the Standard Webhooks headers, sent with a forward key.
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// WebhookID is the Standard Webhooks message id of a job's forward: the
// same for every attempt, retry and replay of the job, so the app can
// dedupe on it.
func WebhookID(jobID string) string { return "job_" + jobID }

// signer sets a forward's signature headers.
type signer struct {
	nouvelSecret []byte // "" sends no X-Nouvel-Signature
	key          []byte // nil sends no Standard Webhooks headers
}

// sign sets the signature headers of body, the forward of jobID sent at
// now, on h.
func (s signer) sign(h http.Header, jobID string, body []byte, now time.Time) {
	if len(s.nouvelSecret) > 0 {
		m := hmac.New(sha256.New, s.nouvelSecret)
		m.Write(body)
		h.Set(HeaderNouvelSignature, hex.EncodeToString(m.Sum(nil)))
	}
	if s.key == nil {
		return
	}
	id, ts := WebhookID(jobID), strconv.FormatInt(now.Unix(), 10)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderWebhookTimestamp, ts)
	h.Set(HeaderWebhookSignature, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
}
