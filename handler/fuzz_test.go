package handler

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

// Secrets the fuzz target verifies with: the current one and one being
// rotated out, as NOUVEL_WEBHOOK_SECRET="new,old" would give.
const (
	fuzzSecret    = "fuzz-secret"
	fuzzOldSecret = "fuzz-old-secret"
	fuzzPath      = "/webhooks/nouvel"
	// fuzzMaxBody is small so that the 413 path is reachable by the fuzzer.
	fuzzMaxBody = 4 << 10
)

// fuzzSign is the lowercase hex HMAC-SHA256 of body, computed here and not
// with the package's Sign, so the property does not trust the code it checks.
func fuzzSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// recordingFake is a Recorder that keeps the deliveries it is given and
// answers as the store would without touching a database.
type recordingFake struct {
	mu    sync.Mutex
	calls []store.WebhookDelivery
}

func (r *recordingFake) RecordWebhook(_ context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, d)
	if d.Report == nil {
		return store.OutcomeInvalid, nil
	}
	return store.OutcomeAccepted, nil
}

// take returns the deliveries recorded since the last take.
func (r *recordingFake) take() []store.WebhookDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := r.calls
	r.calls = nil
	return calls
}

// fuzzEvent is a webhook body as Nouvel sends it, with fields spliced in raw
// so seeds can put anything there.
func fuzzEvent(jobID, status, counts string) []byte {
	return []byte(`{"event":"job.completed","jobId":` + jobID + `,"status":` + status + `,` + counts +
		`,"projects":[{"projectId":"p1","title":"Ad","status":"completed","videoUrl":"https://cdn.example/p1.mp4"}]}`)
}

const fuzzCounts = `"totalProjects":1,"completedProjects":1,"failedProjects":0`

// signed is a seed whose signature is right, so the fuzzer starts past the
// signature check with bodies that exercise ParseEvent.
func signed(f *testing.F, body []byte) {
	f.Add(body, fuzzSign(fuzzSecret, body))
}

func FuzzVerifyParse(f *testing.F) {
	valid := fuzzEvent(`"clx8k9v2t0001qz8x7r4e5w6m"`, `"completed"`, fuzzCounts)
	good := fuzzSign(fuzzSecret, valid)

	// Signatures around a valid event.
	f.Add(valid, good)
	f.Add(valid, fuzzSign(fuzzOldSecret, valid))
	f.Add(valid, fuzzSign("wrong-secret", valid))
	f.Add(valid, good[:63]+flipHex(good[63]))
	f.Add(valid, "")
	f.Add([]byte{}, "")
	f.Add([]byte{}, fuzzSign(fuzzSecret, nil))
	f.Add(valid, strings.Repeat("zz", 32))
	f.Add(valid, good[:62])
	f.Add(valid, good[:63])
	f.Add(valid, good+"00")
	f.Add(valid, good+"0")
	f.Add(valid, strings.ToUpper(good))
	f.Add(valid, "sha256="+good)
	f.Add(valid, " "+good)
	f.Add(valid, good+"\n")
	f.Add(valid, strings.Repeat("\x00", 64))
	f.Add(append(valid, ' '), good) // same signature, one more byte
	// A re-serialisation (Nouvel's sample receiver's trap) has other bytes.
	f.Add(bytes.ReplaceAll(valid, []byte(`,`), []byte(`, `)), good)

	// Signed bodies that are not usable events.
	signed(f, []byte(`{"jobId":`))
	signed(f, []byte(`not json at all`))
	signed(f, []byte(`null`))
	signed(f, []byte(`[]`))
	signed(f, []byte(`42`))
	signed(f, []byte("\xef\xbb\xbf"+string(valid))) // BOM
	signed(f, fuzzEvent(`"`+strings.Repeat("a", 128)+`"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"`+strings.Repeat("a", 129)+`"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"job/../etc"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"job id"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"jöb"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`""`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`null`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`123`, `"completed"`, fuzzCounts))
	signed(f, []byte(`{"event":"job.completed","status":"completed",`+fuzzCounts+`}`))
	signed(f, fuzzEvent(`"job1"`, `"running"`, fuzzCounts))
	signed(f, fuzzEvent(`"job1"`, `"COMPLETED"`, fuzzCounts))
	signed(f, fuzzEvent(`"job1"`, `"expired"`, fuzzCounts))
	signed(f, fuzzEvent(`"job1"`, `""`, fuzzCounts))
	signed(f, fuzzEvent(`"job1"`, `"partial"`, `"totalProjects":"3","completedProjects":"2","failedProjects":"1"`))
	signed(f, fuzzEvent(`"job1"`, `"failed"`, `"totalProjects":1e30,"completedProjects":0,"failedProjects":1`))
	signed(f, fuzzEvent(`"job1"`, `"failed"`, `"totalProjects":9223372036854775807,"completedProjects":9223372036854775807,"failedProjects":0`))
	signed(f, fuzzEvent(`"job1"`, `"failed"`, `"totalProjects":9223372036854775808,"completedProjects":0,"failedProjects":0`))
	signed(f, fuzzEvent(`"job1"`, `"failed"`, `"totalProjects":-1,"completedProjects":0,"failedProjects":0`))
	signed(f, fuzzEvent(`"job1"`, `"failed"`, `"totalProjects":1.5,"completedProjects":0,"failedProjects":0`))
	signed(f, []byte(`{"jobId":{"a":[1,[2,{"b":null}]]},"status":["completed"],"projects":{"x":1}}`))
	signed(f, []byte(`{"jobId":"job1","status":"completed","projects":"x"}`))
	signed(f, []byte(`{"jobId":"job1","status":"completed","projects":[[[[[[[[[[[]]]]]]]]]]]}`))
	signed(f, []byte(strings.Repeat("[", 2000)+strings.Repeat("]", 2000)))
	// Unicode escapes: one that decodes to a valid id, and ones that do not.
	signed(f, fuzzEvent(`"\u006aob1"`, `"\u0063ompleted"`, fuzzCounts))
	signed(f, fuzzEvent(`"job\u0000"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"\ud800job"`, `"completed"`, fuzzCounts))
	signed(f, fuzzEvent(`"job\u2028"`, `"completed"`, fuzzCounts))
	// Duplicate keys: encoding/json keeps the last, whatever it is.
	signed(f, []byte(`{"jobId":"job1","jobId":"job/2","status":"completed"}`))
	signed(f, []byte(`{"jobId":"job/1","jobId":"job2","status":"running","status":"completed"}`))
	signed(f, []byte(`{"jobId":"job1","JOBID":"job2","status":"completed"}`))
	// Over the body limit, signed: 413 and nothing recorded.
	signed(f, fuzzEvent(`"job1"`, `"completed"`, fuzzCounts+`,"pad":"`+strings.Repeat("x", fuzzMaxBody)+`"`))

	verifier := NewVerifier([]string{fuzzSecret, fuzzOldSecret})
	rec := &recordingFake{}
	srv := NewPublic(Deps{
		Recorder: rec, Verifier: verifier, Metrics: NewMetrics(nil), Logger: zerolog.Nop(),
		WebhookPath: fuzzPath, MaxBody: fuzzMaxBody,
	})

	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		// Verify: true exactly when sig decodes to the HMAC of these bytes
		// under one of the secrets.
		verified := verifier.Verify(body, sig)
		if want := matchesHMAC(body, sig); verified != want {
			t.Fatalf("Verify(%q, %q): got %v, want %v", body, sig, verified, want)
		}

		report, id, err := ParseEvent(body)
		checkParse(t, body, report, id, err)

		// The whole public handler, in process.
		req := httptest.NewRequest(http.MethodPost, fuzzPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header[SignatureHeader] = []string{sig}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		calls := rec.take()

		tooLarge := len(body) > fuzzMaxBody
		switch {
		case tooLarge:
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("body of %d bytes: got %d %s, want 413", len(body), w.Code, w.Body)
			}
		case !verified:
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("bad signature: got %d %s, want 401", w.Code, w.Body)
			}
		case report == nil:
			if w.Code != http.StatusBadRequest {
				t.Fatalf("signed unusable event (%v): got %d %s, want 400", err, w.Code, w.Body)
			}
		default:
			if w.Code != http.StatusOK {
				t.Fatalf("signed usable event: got %d %s, want 200", w.Code, w.Body)
			}
		}
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusRequestEntityTooLarge &&
			w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("got status %d %s, want one of 200, 400, 401, 413", w.Code, w.Body)
		}
		if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("answer %d has Content-Type %q, want JSON", w.Code, w.Header().Get("Content-Type"))
		}

		// The recorder is called, once, exactly for signed bodies within the
		// limit, with the exact bytes.
		wantCalls := 0
		if verified && !tooLarge {
			wantCalls = 1
		}
		if len(calls) != wantCalls {
			t.Fatalf("recorder called %d times, want %d (verified %v, %d bytes)", len(calls), wantCalls, verified, len(body))
		}
		if wantCalls == 0 {
			return
		}
		d := calls[0]
		if !bytes.Equal(d.Body, body) {
			t.Fatalf("recorded body %q, want the exact bytes received %q", d.Body, body)
		}
		if (d.Report == nil) != (report == nil) || d.JobID != id {
			t.Fatalf("recorded report %+v job %q, want %+v job %q", d.Report, d.JobID, report, id)
		}
		if d.Report == nil && d.Problem == "" {
			t.Fatalf("unusable delivery recorded without a problem")
		}
		if w.Code == http.StatusOK {
			var ans struct {
				Received  bool   `json:"received"`
				JobID     string `json:"jobId"`
				Duplicate bool   `json:"duplicate"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil || !ans.Received || ans.JobID != d.Report.JobID || ans.Duplicate {
				t.Fatalf("200 answer %s (%v), want received true for job %q, not duplicate", w.Body, err, d.Report.JobID)
			}
		}
	})
}

// flipHex is a hex digit other than c.
func flipHex(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// matchesHMAC is the oracle for Verify: sig is 64 hex digits that decode to
// the HMAC-SHA256 of body under one of the fuzz secrets.
//
// Hex digits are compared without regard to case: Verify uses hex.Decode,
// which takes "AB" as well as "ab". Nouvel sends lowercase, and an uppercase
// spelling of the right MAC is no forgery, so that is accepted here.
func matchesHMAC(body []byte, sig string) bool {
	for _, s := range []string{fuzzSecret, fuzzOldSecret} {
		if len(sig) == 64 && strings.EqualFold(sig, fuzzSign(s, body)) {
			return true
		}
	}
	return false
}

// checkParse holds ParseEvent to its contract: a report is a usable terminal
// event; an error comes without one, and any job id it names is valid.
func checkParse(t *testing.T, body []byte, report *store.Report, id string, err error) {
	t.Helper()
	if err != nil {
		if report != nil {
			t.Fatalf("ParseEvent(%q): error %v with a report %+v", body, err, report)
		}
		if id != "" && !store.ValidJobID(id) {
			t.Fatalf("ParseEvent(%q): error %v names invalid job id %q", body, err, id)
		}
		return
	}
	if report == nil {
		t.Fatalf("ParseEvent(%q): no report and no error", body)
	}
	if !store.ValidJobID(report.JobID) || id != report.JobID {
		t.Fatalf("ParseEvent(%q): job id %q (returned %q), want a valid one", body, report.JobID, id)
	}
	switch report.Status {
	case store.StatusCompleted, store.StatusPartial, store.StatusFailed, store.StatusCancelled:
	default:
		t.Fatalf("ParseEvent(%q): status %q, want completed, partial, failed or cancelled", body, report.Status)
	}
	if report.TotalProjects < 0 || report.CompletedProjects < 0 || report.FailedProjects < 0 {
		t.Fatalf("ParseEvent(%q): negative counts %d/%d/%d", body,
			report.TotalProjects, report.CompletedProjects, report.FailedProjects)
	}
	if !json.Valid(body) {
		t.Fatalf("ParseEvent(%q): a report from a body that is not valid JSON", body)
	}
}
