package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// urlList is a repeatable --url flag.
type urlList []string

func (u *urlList) String() string     { return strings.Join(*u, ",") }
func (u *urlList) Set(s string) error { *u = append(*u, s); return nil }

// generateBody is Nouvel's generate body; nouvelhook adds webhookUrl.
type generateBody struct {
	URLs             []string `json:"urls"`
	VariantCount     int      `json:"variantCount"`
	UserInstructions string   `json:"userInstructions,omitempty"`
	AspectRatio      string   `json:"aspectRatio,omitempty"`
}

// runSubmit submits a generate request through the service and prints the
// job id alone on stdout, so scripts can capture it; how the job will be
// followed goes to stderr.
func runSubmit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("submit", "submit --url U [--url U2] [--variants N] [--instructions T] [--aspect-ratio R]\n\n"+
		"Submits a generate request to Nouvel through the service, which sets webhookUrl to\n"+
		"this receiver (NOUVELHOOK_PUBLIC_URL) and tracks the job. Prints the job id.", stderr)
	var body generateBody
	fs.Var((*urlList)(&body.URLs), "url", "a product page `URL` (1 to 3; repeat the flag)")
	fs.IntVar(&body.VariantCount, "variants", 1, "videos per product page, 1 to 3")
	fs.StringVar(&body.UserInstructions, "instructions", "", "instructions for the video `text`")
	fs.StringVar(&body.AspectRatio, "aspect-ratio", "", "9:16, 16:9 or 1:1 (Nouvel's default when unset)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	switch {
	case len(body.URLs) < 1 || len(body.URLs) > 3:
		return usageError("submit: give 1 to 3 --url flags, got %d", len(body.URLs))
	case body.VariantCount < 1 || body.VariantCount > 3:
		return usageError("submit: --variants must be 1 to 3, got %d", body.VariantCount)
	case body.AspectRatio != "" && !slices.Contains([]string{"9:16", "16:9", "1:1"}, body.AspectRatio):
		return usageError("submit: --aspect-ratio must be 9:16, 16:9 or 1:1, got %q", body.AspectRatio)
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	var ans struct {
		JobID         string `json:"jobId"`
		TotalProjects int    `json:"totalProjects"`
		Mode          string `json:"mode"`
		WebhookURL    string `json:"webhookUrl"`
	}
	if _, err := c.post(ctx, "/v1/generate", body, &ans); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	fmt.Fprintln(stdout, ans.JobID)
	if ans.Mode == "poll-only" {
		fmt.Fprintf(stderr, "%d videos; no NOUVELHOOK_PUBLIC_URL, so no webhook: the job is followed by polling alone\n", ans.TotalProjects)
	} else {
		fmt.Fprintf(stderr, "%d videos; webhook to %s, with polling for anything it misses\n", ans.TotalProjects, ans.WebhookURL)
	}
	return nil
}
