package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

const testAPIKey = "nvl_e2e_key_0123456789"

// startWithNouvel runs the service against a stand-in Nouvel whose webhooks
// reach the service's public listener. publicURL "" runs poll-only.
func startWithNouvel(t *testing.T, publicURL string, dropRate float64) (*testService, *nouveltest.Server) {
	t.Helper()
	var hook string
	nouvel := nouveltest.New(nouveltest.Options{
		APIKey: testAPIKey, WebhookSecret: testSecret, DropRate: dropRate, GeneratePolls: 2,
		GenerateOutcome: store.StatusCompleted, RouteWebhook: func(string) string { return hook },
	})
	t.Cleanup(nouvel.Close)
	s := startService(t, map[string]string{
		"NOUVEL_API_KEY": testAPIKey, "NOUVEL_API_BASE_URL": nouvel.URL(), "NOUVELHOOK_PUBLIC_URL": publicURL,
		"NOUVELHOOK_POLL_INTERVAL": "1s", "NOUVELHOOK_POLL_BUDGET": "60",
	})
	hook = s.Public + "/webhooks/nouvel"
	return s, nouvel
}

func TestSubmitSetsWebhookURLAndReconciles(t *testing.T) {
	s, nouvel := startWithNouvel(t, "https://hooks.example.com/", 0)
	out, errOut, err := s.cli("submit", "--url", "https://shop.example/products/1", "--variants", "2")
	if err != nil {
		t.Fatalf("submit: %v (%s)", err, errOut)
	}
	id := strings.TrimSpace(out)
	truth, ok := nouvel.Job(id)
	if !ok || truth.WebhookURL != "https://hooks.example.com/webhooks/nouvel" || truth.TotalProjects != 2 {
		t.Fatalf("Nouvel got job %q with webhookUrl %q and %d projects; want https://hooks.example.com/webhooks/nouvel and 2",
			id, truth.WebhookURL, truth.TotalProjects)
	}
	if _, errOut, err := s.cli("jobs", "wait", id, "--timeout", "2m"); err != nil {
		t.Fatalf("jobs wait: %v (%s)", err, errOut)
	}
	var j store.Job
	s.adminGet("/v1/jobs/"+id, &j)
	if j.Status != "completed" || j.Source != "webhook" || j.WebhookDeliveries != 1 || nouvel.Polls(id) != 2 {
		t.Fatalf("got status=%s source=%s deliveries=%d after %d polls, want completed webhook 1 after 2",
			j.Status, j.Source, j.WebhookDeliveries, nouvel.Polls(id))
	}
}

func TestSubmitPollOnly(t *testing.T) {
	s, nouvel := startWithNouvel(t, "", 0)
	out, errOut, err := s.cli("submit", "--url", "https://shop.example/products/2")
	if err != nil || !strings.Contains(errOut, "polling alone") {
		t.Fatalf("submit: %v, stderr %q; want success saying polling alone", err, errOut)
	}
	id := strings.TrimSpace(out)
	if truth, _ := nouvel.Job(id); truth.WebhookURL != "" {
		t.Fatalf("poll-only sent webhookUrl %q, want none", truth.WebhookURL)
	}
	if _, errOut, err := s.cli("jobs", "wait", id, "--timeout", "2m"); err != nil {
		t.Fatalf("jobs wait: %v (%s)", err, errOut)
	}
	var j store.Job
	s.adminGet("/v1/jobs/"+id, &j)
	if j.Status != "completed" || j.Source != "poll" || j.WebhookDeliveries != 0 {
		t.Fatalf("got status=%s source=%s deliveries=%d, want completed poll 0", j.Status, j.Source, j.WebhookDeliveries)
	}
}

func TestSubmitPassesNouvelRefusalsBack(t *testing.T) {
	s, _ := startWithNouvel(t, "https://hooks.example.com", 0)
	_, _, err := s.cli("submit", "--url", "ftp://shop.example/products/3")
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "Nouvel:") {
		t.Fatalf("got %v, want Nouvel's 422 passed back", err)
	}
	code, body := postJSON(t, s.Admin+"/v1/generate", `{"urls":["https://shop.example/p"],"webhookUrl":"https://elsewhere.example"}`)
	if code != 400 || !strings.Contains(body, "webhookUrl") {
		t.Fatalf("body with webhookUrl: got %d %s, want 400 naming webhookUrl", code, body)
	}
	if _, _, err := s.cli("submit"); err == nil || !strings.Contains(err.Error(), "--url") {
		t.Fatalf("submit without --url: got %v, want an error naming --url", err)
	}
}

func TestServeRefusesBadPublicURL(t *testing.T) {
	for _, url := range []string{"http://hooks.example.com", "https://10.1.2.3", "https://localhost:8443"} {
		env := mapEnv(map[string]string{"NOUVEL_WEBHOOK_SECRET": testSecret, "NOUVELHOOK_PUBLIC_URL": url,
			"NOUVELHOOK_LISTEN": "127.0.0.1:0", "NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:0",
			"NOUVELHOOK_DB": t.TempDir() + "/nh.db"})
		var stderr strings.Builder
		err := run(context.Background(), []string{"nouvelhook", "serve"}, env, nil, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), "NOUVELHOOK_PUBLIC_URL") || strings.Contains(stderr.String(), "listening") {
			t.Errorf("public URL %s: got %v (log %q), want a refusal naming NOUVELHOOK_PUBLIC_URL before listening", url, err, stderr.String())
		}
	}
}
