package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

const jobsUsage = `Usage: nouvelhook jobs COMMAND [flags]

Commands:
  list [--status S[,S]] [--since RFC3339] [--limit N] [--cursor C] [--json]
                            the job log, newest first
  show JOBID [--json]       one job, with its deliveries
  wait JOBID [--timeout D]  wait until the job ends (exit 0 completed,
                            1 partial/failed/cancelled/expired/not_found,
                            2 timeout or error)

The commands talk to the admin API at NOUVELHOOK_ADMIN_URL
(default http://127.0.0.1:8081) and send NOUVELHOOK_ADMIN_TOKEN when set.
Run "nouvelhook jobs COMMAND --help" for a command's flags.
`

// defaultListLimit is how many jobs "jobs list" shows without --limit.
const defaultListLimit = 50

func runJobs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "jobs", jobsUsage, []clientCommand{
		{"list", jobsList}, {"show", jobsShow}, {"wait", jobsWait},
	}, args, getenv, stdout, stderr)
}

func jobsList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs list", "jobs list [--status S[,S]] [--since RFC3339] [--limit N] [--cursor C] [--json]\n\n"+
		"Lists the job log, newest first, as a table or as JSON. When more jobs match than\n"+
		"--limit, the table is followed on stderr by the command that shows the next ones\n"+
		"(more: nouvelhook jobs list … --cursor C), and the JSON has a non-empty nextCursor.", stderr)
	status := fs.String("status", "", "only jobs with one of these comma-separated `statuses`:\n"+
		"pending, running, completed, partial, failed, cancelled, expired, not_found")
	since := fs.String("since", "", "only jobs created at or after this RFC3339 `time`")
	limit := fs.Int("limit", defaultListLimit, "show at most `N` jobs")
	cursor := fs.String("cursor", "", "start after the jobs an earlier list showed: its nextCursor `C`")
	asJSON := fs.Bool("json", false, `print {"jobs":[…],"nextCursor":"…"} as the admin API does`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	q, err := listQuery(*status, *since, *limit)
	if err != nil {
		return err
	}
	if *cursor != "" {
		q.Set("cursor", *cursor)
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	jobs, next, err := c.listJobs(ctx, q, *limit, store.MaxLimit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, map[string]any{"jobs": jobs, "nextCursor": next})
	}
	if err := writeJobsTable(stdout, jobs); err != nil {
		return err
	}
	if next != "" {
		// On stderr, so that stdout stays a table that scripts can cut.
		fmt.Fprintln(stderr, "more: "+nextListCommand(*status, *since, *limit, next))
	}
	return nil
}

// nextListCommand is the jobs list command that shows the page after next:
// the same filters, starting at the cursor.
func nextListCommand(status, since string, limit int, next string) string {
	cmd := "nouvelhook jobs list"
	if status != "" {
		cmd += " --status " + status
	}
	if since != "" {
		cmd += " --since " + since
	}
	if limit != defaultListLimit {
		cmd += " --limit " + strconv.Itoa(limit)
	}
	return cmd + " --cursor " + next
}

// listQuery checks list's flags here, so that a typo is a usage error
// naming the flag rather than the API's 400.
func listQuery(status, since string, limit int) (url.Values, error) {
	q := url.Values{}
	if status != "" {
		for _, s := range strings.Split(status, ",") {
			if !store.Status(s).Known() {
				return nil, usageError("jobs list: --status %q is not a job status", s)
			}
		}
		q.Set("status", status)
	}
	if since != "" {
		if _, err := time.Parse(time.RFC3339, since); err != nil {
			return nil, usageError("jobs list: --since %q is not an RFC3339 time like 2025-01-02T15:04:05Z", since)
		}
		q.Set("since", since)
	}
	if limit < 1 {
		return nil, usageError("jobs list: --limit %d must be 1 or more", limit)
	}
	return q, nil
}

func jobsShow(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs show", "jobs show JOBID [--json]\n\nShows one job with its verified webhook deliveries.", stderr)
	asJSON := fs.Bool("json", false, "print the job as the admin API does")
	id, err := parseJobID(fs, args)
	if err != nil {
		return err
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	j, err := c.job(ctx, id, 0)
	if isNotFound(err) {
		return fmt.Errorf("job %s not found", id)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, j)
	}
	return writeJob(stdout, j)
}

func runTrack(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("track", "track JOBID...\n\n"+
		"Asks the service to reconcile jobs submitted elsewhere: with NOUVEL_API_KEY set,\n"+
		"it polls Nouvel for each until it ends, whether or not a webhook comes.", stderr)
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, ids, 1, -1, "JOBID"); err != nil {
		return err
	}
	if err := checkJobIDs("track", ids); err != nil {
		return err
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	warned := map[string]bool{}
	for _, id := range ids {
		var ans struct {
			store.Job
			// Warning says the service will not poll the job (no
			// NOUVEL_API_KEY); it is the same for every job, so it is
			// printed once.
			Warning string `json:"warning"`
		}
		code, err := c.post(ctx, "/v1/jobs", map[string]string{"jobId": id}, &ans)
		if err != nil {
			return fmt.Errorf("track %s: %w", id, err)
		}
		if ans.Warning != "" && !warned[ans.Warning] {
			warned[ans.Warning] = true
			fmt.Fprintln(stderr, "nouvelhook: warning: "+strings.ReplaceAll(ans.Warning, "\n", " "))
		}
		if code == http.StatusCreated {
			fmt.Fprintf(stdout, "%s tracked\n", id)
		} else {
			fmt.Fprintf(stdout, "%s already known (status %s)\n", id, ans.Status)
		}
	}
	return nil
}
