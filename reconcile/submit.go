package reconcile

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nouvelhook/nouvelhook/store"
)

// Submit modes, as the answer to a submit names them.
const (
	// ModeWebhook: webhookUrl points at this receiver, and polling fills in
	// whatever the webhook misses.
	ModeWebhook = "webhook"
	// ModePollOnly: no NOUVELHOOK_PUBLIC_URL, so no webhookUrl was sent and
	// the job is reconciled by polling alone.
	ModePollOnly = "poll-only"
)

// Submit sends Nouvel's generate body with webhookUrl set to this receiver
// (none in poll-only mode), tracks the job Nouvel makes, and returns
// Nouvel's answer with "mode" and "webhookUrl" added. A body that is not a
// JSON object, or that sets webhookUrl itself, is store.ErrInvalid; Nouvel's
// refusals are *APIError as Client.Generate returns them.
func (r *Reconciler) Submit(ctx context.Context, body []byte) (json.RawMessage, error) {
	r.submitMu.Lock()
	if r.closing {
		r.submitMu.Unlock()
		return nil, store.Errorf(store.EUNAVAILABLE, "store unavailable: shutting down")
	}
	r.submits.Add(1)
	r.submitMu.Unlock()
	defer r.submits.Done()

	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return nil, store.Errorf(store.EINVALID, "body must be a JSON object like Nouvel's generate body")
	}
	if _, ok := req["webhookUrl"]; ok {
		return nil, store.Errorf(store.EINVALID, "leave webhookUrl out: nouvelhook sets it from NOUVELHOOK_PUBLIC_URL")
	}
	mode := ModePollOnly
	if r.opts.WebhookURL != "" {
		mode = ModeWebhook
		req["webhookUrl"], _ = json.Marshal(r.opts.WebhookURL)
	}
	out, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// Not cancelled by shutdown: once sent, Nouvel may make the job, and it
	// must then be tracked. The client's own timeout bounds the call.
	raw, _, err := r.opts.Client.Generate(context.WithoutCancel(ctx), out)
	if err != nil {
		return nil, err
	}
	res, err := ParseGenerate(raw)
	if err != nil {
		return nil, err
	}
	if _, _, err := r.Track(context.WithoutCancel(ctx), res.JobID); err != nil {
		r.log.Error().Err(err).Str("job_id", res.JobID).Msg("Nouvel made the job but tracking it failed; run `nouvelhook track` for it")
		return nil, fmt.Errorf("job %s was submitted but not tracked: %w", res.JobID, err)
	}
	r.log.Info().Str("job_id", res.JobID).Str("mode", mode).Msg("submitted and tracking")

	var answer map[string]json.RawMessage
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("%w: generate answer: %w", ErrTransport, err)
	}
	answer["mode"], _ = json.Marshal(mode)
	answer["webhookUrl"], _ = json.Marshal(r.opts.WebhookURL)
	return json.Marshal(answer)
}
