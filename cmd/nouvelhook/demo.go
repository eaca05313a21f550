package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// The demo's settings: a stand-in Nouvel that drops some webhooks, and the
// service polling it as fast as the configuration allows.
const (
	demoJobs     = 6
	demoDropRate = 0.4
	demoSecret   = "demo-webhook-secret"
	demoKey      = "nvl_demo_key"
	demoPublic   = "https://nouvelhook.demo.example"
	demoTimeout  = 2 * time.Minute
)

// runDemo runs the whole product against a built-in stand-in for Nouvel:
// it submits a few jobs through the admin API, the stand-in drops some of
// their webhooks, and each job is printed as it ends, with what caught it.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "demo\n\nRuns nouvelhook on a temporary database against a built-in stand-in for Nouvel\n"+
		"that drops some webhooks, submits a few jobs, and shows each one ending and\nwhether the webhook or the poller caught it. Needs no account and no flags.", stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "nouvelhook-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var public atomic.Pointer[string] // set once the service listens, read by the stand-in
	nouvel := nouveltest.New(nouveltest.Options{
		APIKey: demoKey, WebhookSecret: demoSecret, DropRate: demoDropRate, Seed: time.Now().UnixNano(),
		RouteWebhook: func(string) string { return *public.Load() },
	})
	defer nouvel.Close()

	cfg := config.Default()
	cfg.WebhookSecrets, cfg.APIKey, cfg.APIBaseURL = []string{demoSecret}, demoKey, nouvel.URL()
	cfg.Listen, cfg.AdminListen, cfg.PublicURL = "127.0.0.1:0", "127.0.0.1:0", demoPublic
	cfg.DBPath = dir + "/nouvelhook.db"
	cfg.PollBudget, cfg.PollInterval, cfg.MissedGrace = 60, time.Second, 3*time.Second
	if err := cfg.Validate(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	admin := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, zerolog.Nop(), func(pub, adm string) {
			hook := pub + cfg.WebhookPath
			public.Store(&hook)
			admin <- adm
		})
	}()
	var adminURL string
	select {
	case adminURL = <-admin:
	case err := <-done:
		return fmt.Errorf("demo service did not start: %w", err)
	}

	fmt.Fprintf(stdout, "nouvelhook demo: a stand-in Nouvel that drops %d%% of webhooks, and nouvelhook in front of it.\n", int(demoDropRate*100))
	fmt.Fprintf(stdout, "  webhooks: %s    admin API: %s\n\n", *public.Load(), adminURL)
	d := &demo{admin: adminURL, nouvel: nouvel, out: stdout}
	err = d.run(ctx)
	cancel()
	if serr := <-done; err == nil && serr != nil && ctx.Err() == nil {
		err = serr
	}
	return err
}

type demo struct {
	admin  string
	nouvel *nouveltest.Server
	out    io.Writer
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintf(d.out, "Submitting %d jobs through POST /v1/generate:\n", demoJobs)
	for i := range demoJobs {
		body := fmt.Sprintf(`{"urls":["https://shop.example/products/item-%d"],"variantCount":%d,"aspectRatio":"9:16"}`, i+1, 1+i%3)
		var ans struct {
			JobID, Mode string
		}
		if err := d.post(ctx, "/v1/generate", body, &ans); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  %s  (%s mode)\n", ans.JobID, ans.Mode)
	}
	fmt.Fprint(d.out, "\nJobs move forward only while they are polled; watching the change feed (GET /v1/events):\n\n")
	const row = "  %-8s  %-36s  %-9s  %-6s  %s\n"
	fmt.Fprintf(d.out, row, "ENDED", "JOB", "STATUS", "VIDEOS", "CAUGHT BY")
	byWebhook, byPoller, after := 0, 0, int64(0)
	for byWebhook+byPoller < demoJobs {
		var feed struct {
			Events []store.Job `json:"events"`
			Last   int64       `json:"last"`
		}
		if err := d.get(ctx, fmt.Sprintf("/v1/events?after=%d&wait=30s", after), &feed); err != nil {
			return err
		}
		for _, j := range feed.Events {
			caught := "webhook"
			if j.Source == store.SourcePoll {
				caught, byPoller = "poller (webhook dropped)", byPoller+1
			} else {
				byWebhook++
			}
			fmt.Fprintf(d.out, row, j.TerminalAt.Local().Format("15:04:05"), j.JobID, j.Status,
				fmt.Sprintf("%d/%d", j.CompletedProjects, j.TotalProjects), caught)
		}
		after = feed.Last
	}
	fmt.Fprintf(d.out, "\nAll %d jobs ended once each: %d by webhook, %d by the poller. Nothing lost.\n",
		demoJobs, byWebhook, byPoller)
	fmt.Fprintln(d.out, "In production, point webhookUrl at nouvelhook serve and set NOUVEL_API_KEY so the poller runs.")
	return nil
}

func (d *demo) get(ctx context.Context, path string, v any) error {
	return d.do(ctx, http.MethodGet, path, "", v)
}

func (d *demo) post(ctx context.Context, path, body string, v any) error {
	return d.do(ctx, http.MethodPost, path, body, v)
}

func (d *demo) do(ctx context.Context, method, path, body string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.admin+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("demo did not finish within %s", demoTimeout)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}
