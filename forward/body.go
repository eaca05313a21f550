package forward

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// Events a forward's body names.
const (
	// EventCompleted is the event of a job Nouvel ended (completed, partial,
	// failed or cancelled), as Nouvel's own webhook names it.
	EventCompleted = "job.completed"
	// EventExpired is the event of a job that did not end within
	// NOUVELHOOK_TRACK_TTL.
	EventExpired = "job.expired"
	// EventNotFound is the event of a job Nouvel kept answering 404 for.
	EventNotFound = "job.not_found"
)

// body is what the app receives: Nouvel's webhook shape, then what
// nouvelhook adds. Field order is key order.
type body struct {
	Event             string        `json:"event"`
	JobID             string        `json:"jobId"`
	Status            store.Status  `json:"status"`
	TotalProjects     int           `json:"totalProjects"`
	CompletedProjects int           `json:"completedProjects"`
	FailedProjects    int           `json:"failedProjects"`
	Projects          []bodyProject `json:"projects"`
	Source            string        `json:"source"`
	Seq               int64         `json:"seq"`
	WebhookMissed     bool          `json:"webhookMissed"`
	TerminalAt        string        `json:"terminalAt"`
}

// bodyProject is written out here rather than reusing store.Project, so
// that the app's contract cannot change with the store's.
type bodyProject struct {
	ProjectID string       `json:"projectId"`
	Title     string       `json:"title"`
	Status    store.Status `json:"status"`
	VideoURL  string       `json:"videoUrl"`
}

// Body returns the bytes forwarded to the app for an ended job: Nouvel's
// webhook shape (event, jobId, status, totalProjects, completedProjects,
// failedProjects, projects[{projectId, title, status, videoUrl}]) followed
// by source, seq, webhookMissed and terminalAt (RFC 3339, UTC). The bytes
// are exactly what JavaScript's JSON.stringify(JSON.parse(body)) gives:
// compact, nothing HTML-escaped, U+2028 and U+2029 written raw; so a
// receiver that checks X-Nouvel-Signature over JSON.stringify(req.body), as
// Nouvel's sample does, accepts them. A job that has not ended is an error.
func Body(j store.Job) ([]byte, error) {
	ev, err := event(j)
	if err != nil {
		return nil, err
	}
	b := body{
		Event: ev, JobID: j.JobID, Status: j.Status, TotalProjects: j.TotalProjects,
		CompletedProjects: j.CompletedProjects, FailedProjects: j.FailedProjects,
		Projects: make([]bodyProject, len(j.Projects)), Source: j.Source, Seq: j.Seq,
		WebhookMissed: j.WebhookMissed, TerminalAt: j.TerminalAt.UTC().Format(time.RFC3339Nano),
	}
	for i, p := range j.Projects {
		b.Projects[i] = bodyProject(p)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("forward body of job %q: %w", j.JobID, err)
	}
	return unescapeSeparators(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// event names the job's end, or refuses a job that has not ended.
func event(j store.Job) (string, error) {
	switch {
	case !j.Status.Terminal() || j.TerminalAt == nil:
		return "", fmt.Errorf("forward body of job %q: status %q has not ended", j.JobID, j.Status)
	case j.Status == store.StatusExpired:
		return EventExpired, nil
	case j.Status == store.StatusNotFound:
		return EventNotFound, nil
	}
	return EventCompleted, nil
}

// unescapeSeparators writes U+2028 and U+2029 raw where encoding/json
// escaped them (it always does, for JSONP), since JSON.stringify does not.
// Every backslash in JSON text starts an escape, so walking escape by
// escape never mistakes an escaped backslash followed by "u2028" for one.
func unescapeSeparators(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		if rest := b[i:]; len(rest) >= 6 && (string(rest[:6]) == `\u2028` || string(rest[:6]) == `\u2029`) {
			out = append(out, string(rune(0x2028+int(rest[5]-'8')))...)
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
