package reconcile_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// generateBody asks for 2 videos of one product.
const generateBody = `{"urls":["https://shop.example/products/42"],"variantCount":2,"aspectRatio":"1:1","userInstructions":"short"}`

// submitAnswer is the admin API's answer to POST /v1/generate.
type submitAnswer struct {
	JobID         string `json:"jobId"`
	TotalProjects int    `json:"totalProjects"`
	Status        string `json:"status"`
	Mode          string `json:"mode"`
	WebhookURL    string `json:"webhookUrl"`
	Error         string `json:"error"`
}

func TestSubmitTracksAndEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		webhookURL string // the reconciler's; "" is poll-only
		wantMode   string
		wantSource string
	}{
		{"webhook", publicHook, reconcile.ModeWebhook, store.SourceWebhook},
		{"poll-only", "", reconcile.ModePollOnly, store.SourcePoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, time.Minute, nil, func(o *reconcile.Options) { o.WebhookURL = tc.webhookURL })
			status, body := adminPost(t, f.Admin.URL+"/v1/generate", generateBody)
			var ans submitAnswer
			decode(t, body, &ans)
			if status != http.StatusCreated || ans.JobID == "" || ans.Mode != tc.wantMode ||
				ans.WebhookURL != tc.webhookURL || ans.TotalProjects != 2 || ans.Status != string(store.StatusRunning) {
				t.Fatalf("POST /v1/generate: got %d %s, want 201 with a jobId, 2 projects, running, mode %q, webhookUrl %q",
					status, body, tc.wantMode, tc.webhookURL)
			}
			truth, ok := f.Nouvel.Job(ans.JobID)
			if !ok || truth.WebhookURL != tc.webhookURL || truth.TotalProjects != 2 {
				t.Fatalf("stand-in job %s: got known=%v webhookUrl %q %d projects, want %q and 2",
					ans.JobID, ok, truth.WebhookURL, truth.TotalProjects, tc.webhookURL)
			}
			if status, body := adminGet(t, f.Admin.URL+"/v1/jobs/"+ans.JobID); status != http.StatusOK {
				t.Fatalf("GET /v1/jobs/%s after submit: got %d %s, want 200", ans.JobID, status, body)
			}

			f.runToEnd(t)
			j := checkEnded(t, f, ans.JobID)
			if j.Source != tc.wantSource || j.PollCount != truth.PollsNeeded {
				t.Errorf("job: got source %s pollCount %d, want %s %d", j.Source, j.PollCount, tc.wantSource, truth.PollsNeeded)
			}
		})
	}
}

func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute, nil, nil)
	for _, tc := range []struct {
		name       string
		body       string
		fault      *nouveltest.Fault
		authStatus int
		wantStatus int
		wantError  string // the whole message for Nouvel's refusals, a part for ours
		wantSent   bool   // whether the request reached Nouvel
	}{
		{name: "sets webhookUrl", body: `{"urls":["https://shop.example/p/1"],"webhookUrl":"https://elsewhere.example/hook"}`,
			wantStatus: http.StatusBadRequest, wantError: "webhookUrl"},
		{name: "array", body: `[{"urls":["https://shop.example/p/1"]}]`, wantStatus: http.StatusBadRequest, wantError: "JSON object"},
		{name: "string", body: `"https://shop.example/p/1"`, wantStatus: http.StatusBadRequest, wantError: "JSON object"},
		{name: "null", body: `null`, wantStatus: http.StatusBadRequest, wantError: "JSON object"},
		{name: "not JSON", body: `urls=https://shop.example/p/1`, wantStatus: http.StatusBadRequest, wantError: "JSON object"},
		{name: "empty", body: ``, wantStatus: http.StatusBadRequest, wantError: "JSON object"},

		{name: "variantCount 7", body: `{"urls":["https://shop.example/p/1"],"variantCount":7}`, wantSent: true,
			wantStatus: http.StatusBadRequest, wantError: "Nouvel: variantCount must be between 1 and 3"},
		{name: "aspectRatio 4:3", body: `{"urls":["https://shop.example/p/1"],"aspectRatio":"4:3"}`, wantSent: true,
			wantStatus: http.StatusBadRequest, wantError: "Nouvel: aspectRatio must be one of 9:16, 16:9, 1:1"},
		{name: "product URL not http(s)", body: `{"urls":["ftp://shop.example/p/1"]}`, wantSent: true,
			wantStatus: http.StatusUnprocessableEntity, wantError: "Nouvel: urls[0] is not a valid http(s) URL"},
		{name: "no credits", body: generateBody, fault: &nouveltest.Fault{Status: http.StatusPaymentRequired}, wantSent: true,
			wantStatus: http.StatusPaymentRequired, wantError: "Nouvel: Payment Required"},
		{name: "rate limited", body: generateBody, fault: &nouveltest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 20 * time.Second},
			wantSent: true, wantStatus: http.StatusTooManyRequests, wantError: "Nouvel: Rate limit exceeded: 60 requests per minute per API key"},
		{name: "key refused", body: generateBody, authStatus: http.StatusUnauthorized, wantSent: true,
			wantStatus: http.StatusUnauthorized, wantError: "Nouvel: Unauthorized"},
		{name: "Nouvel fails", body: generateBody, fault: &nouveltest.Fault{Status: http.StatusInternalServerError}, wantSent: true,
			wantStatus: http.StatusBadGateway, wantError: "Nouvel: Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.Nouvel.Requests())
			if tc.fault != nil {
				f.Nouvel.InjectFault(*tc.fault)
			}
			f.Nouvel.SetAuthStatus(tc.authStatus)
			defer f.Nouvel.SetAuthStatus(0)

			status, body := adminPost(t, f.Admin.URL+"/v1/generate", tc.body)
			var ans submitAnswer
			decode(t, body, &ans)
			matches := ans.Error == tc.wantError
			if !tc.wantSent {
				matches = strings.Contains(ans.Error, tc.wantError)
			}
			if status != tc.wantStatus || !matches || ans.JobID != "" {
				t.Errorf("POST /v1/generate: got %d %s, want %d {\"error\":%q}", status, body, tc.wantStatus, tc.wantError)
			}
			if bytes.Contains(body, []byte(testKey)) {
				t.Errorf("POST /v1/generate: got %s, which contains the API key", body)
			}
			if sent := len(f.Nouvel.Requests()) - before; sent != map[bool]int{false: 0, true: 1}[tc.wantSent] {
				t.Errorf("got %d requests to Nouvel, want sent=%v", sent, tc.wantSent)
			}
		})
	}

	status, body := adminGet(t, f.Admin.URL+"/v1/jobs")
	var list struct {
		Jobs []store.Job `json:"jobs"`
	}
	decode(t, body, &list)
	if status != http.StatusOK || len(list.Jobs) != 0 {
		t.Errorf("GET /v1/jobs after refusals: got %d with %d jobs, want 200 and none tracked", status, len(list.Jobs))
	}
}

func TestSubmitWithoutReconciler(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute, nil, nil)
	admin := httptest.NewServer(handler.NewAdmin(handler.Deps{
		Store: f.Store, Verifier: handler.NewVerifier([]string{testSecret}), Metrics: handler.NewMetrics(f.Store),
		Logger: zerolog.Nop(), WebhookPath: "/webhooks/nouvel", MaxBody: 1 << 20, Now: f.Clock.Now,
	}))
	defer admin.Close()

	status, body := adminPost(t, admin.URL+"/v1/generate", generateBody)
	var ans submitAnswer
	decode(t, body, &ans)
	if status != http.StatusServiceUnavailable || !strings.Contains(ans.Error, "NOUVEL_API_KEY") {
		t.Errorf("POST /v1/generate without a reconciler: got %d %s, want 503 naming NOUVEL_API_KEY", status, body)
	}
	if n := len(f.Nouvel.Requests()); n != 0 {
		t.Errorf("got %d requests to Nouvel, want none", n)
	}
}
