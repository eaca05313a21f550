package main

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// appMode is how the test app answers a forward.
type appMode int

const (
	appUp   appMode = iota // 200 at once
	appDown                // 503 at once
	appSlow                // takes the job at once, answers 200 after the app's delay
	appHang                // no answer until the sender goes away
)

// appHit is one forward the app received.
type appHit struct {
	JobID  string
	Status int // what the app answered; 0 for none (it hung)
	At     time.Time
}

// fwdApp is the app nouvelhook forwards to: an httptest.Server that
// checks each forward's X-Nouvel-Signature against testSecret and answers
// as its mode says, recording every request.
type fwdApp struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	mode    appMode
	delay   time.Duration
	hits    []appHit
	ok      map[string]int // job id → 2xx answers
	badSigs int
	arrived chan appHit // each request as it arrives, when not nil
}

// newFwdApp starts an app answering as mode; it is closed when the test
// ends (a hanging request ends when its sender does).
func newFwdApp(t *testing.T, mode appMode) *fwdApp {
	t.Helper()
	a := &fwdApp{t: t, mode: mode, ok: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is where nouvelhook forwards to.
func (a *fwdApp) URL() string { return a.srv.URL + "/hooks/nouvel" }

func (a *fwdApp) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender went away
	}
	var ev struct {
		JobID string `json:"jobId"`
	}
	if json.Unmarshal(body, &ev) != nil || !hmac.Equal([]byte(r.Header.Get("X-Nouvel-Signature")), []byte(sign(testSecret, body))) ||
		r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		a.mu.Lock()
		a.badSigs++
		a.mu.Unlock()
		http.Error(w, "bad forward", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	mode, delay, arrived := a.mode, a.delay, a.arrived
	a.mu.Unlock()
	hit := appHit{JobID: ev.JobID, At: time.Now()}
	if arrived != nil {
		arrived <- hit
	}
	switch mode {
	case appDown:
		hit.Status = http.StatusServiceUnavailable
	case appHang:
		<-r.Context().Done()
	case appSlow:
		// The app has done its work when the request arrives; a sender
		// that dies before the answer will send the job again.
		hit.Status = http.StatusOK
		a.record(hit)
		select {
		case <-time.After(delay):
			w.WriteHeader(hit.Status)
		case <-r.Context().Done():
		}
		return
	default:
		hit.Status = http.StatusOK
	}
	a.record(hit)
	if hit.Status != 0 {
		w.WriteHeader(hit.Status)
	}
}

func (a *fwdApp) record(hit appHit) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hits = append(a.hits, hit)
	if hit.Status == http.StatusOK {
		a.ok[hit.JobID]++
	}
}

// set changes how the app answers from now on.
func (a *fwdApp) set(mode appMode, delay time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode, a.delay = mode, delay
}

// accepted counts the jobs the app answered 200 for at least once, and
// all its 200 answers.
func (a *fwdApp) accepted() (jobs, answers int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.ok {
		answers += n
	}
	return len(a.ok), answers
}

// hitsFor returns the requests the app got for jobID, in order.
func (a *fwdApp) hitsFor(jobID string) []appHit {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []appHit
	for _, h := range a.hits {
		if h.JobID == jobID {
			out = append(out, h)
		}
	}
	return out
}

// checkSignatures fails the test if any forward came unsigned or
// malformed.
func (a *fwdApp) checkSignatures() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.badSigs > 0 {
		a.t.Errorf("the app got %d forwards with a wrong X-Nouvel-Signature, method or content type", a.badSigs)
	}
}

// forwardStats is the "forwards" part of GET /v1/stats.
type forwardStats struct {
	Forwards *struct {
		ByState map[string]int `json:"byState"`
		Depth   int            `json:"depth"`
		Paused  bool           `json:"paused"`
	} `json:"forwards"`
}

// waitFor polls cond every 50 ms until it holds or limit passes, and
// reports whether it held.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobForward is a job's JSON as far as its forward goes.
type jobForward struct {
	JobID   string `json:"jobId"`
	Forward *struct {
		State      string `json:"state"`
		Attempts   int    `json:"attempts"`
		LastStatus int    `json:"lastStatus"`
		LastError  string `json:"lastError"`
	} `json:"forward"`
}

func (j jobForward) String() string {
	if j.Forward == nil {
		return fmt.Sprintf("job %s: no forward", j.JobID)
	}
	f := j.Forward
	return fmt.Sprintf("job %s: forward %s after %d attempts, last status %d, last error %q", j.JobID, f.State, f.Attempts, f.LastStatus, f.LastError)
}
