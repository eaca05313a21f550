package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/nouvelhook/nouvelhook/store"
)

const forwardUsage = `Usage: nouvelhook forward COMMAND [flags]

Commands:
  list [--state S[,S]] [--limit N] [--cursor C] [--json]
                          the forwarding queue: failed and paused first,
                          then pending, then delivered
  retry JOBID...          send these jobs to the app again, due now with their
                          attempts reset; also ends a pause after a 410
  replay --after SEQ      send every job with a seq after SEQ again

The service forwards only with NOUVELHOOK_FORWARD_URL set; otherwise these
commands fail with a line that says so.
The commands talk to the admin API at NOUVELHOOK_ADMIN_URL
(default http://127.0.0.1:8081) and send NOUVELHOOK_ADMIN_TOKEN when set.
Run "nouvelhook forward COMMAND --help" for a command's flags.
`

// defaultForwardListLimit is how many forwards "forward list" shows
// without --limit.
const defaultForwardListLimit = 50

func runForward(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "forward", forwardUsage, []clientCommand{
		{"list", forwardList}, {"retry", forwardRetry}, {"replay", forwardReplay},
	}, args, getenv, stdout, stderr)
}

func forwardList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward list", "forward list [--state S[,S]] [--limit N] [--cursor C] [--json]\n\n"+
		"Lists the forwarding queue: failed and paused forwards first, then pending, then\n"+
		"delivered, each lowest seq first, as a table or as JSON. When more match than\n"+
		"--limit, the table is followed on stderr by the command that shows the next ones\n"+
		"(more: nouvelhook forward list … --cursor C), and the JSON has a non-empty nextCursor.", stderr)
	state := fs.String("state", "", "only forwards in one of these comma-separated `states`:\n"+
		"pending, delivered, failed, paused")
	limit := fs.Int("limit", defaultForwardListLimit, "show at most `N` forwards")
	cursor := fs.String("cursor", "", "start after the forwards an earlier list showed: its nextCursor `C`")
	asJSON := fs.Bool("json", false, `print {"forwards":[…],"nextCursor":"…"} as the admin API does`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	q := url.Values{}
	if *state != "" {
		for _, s := range strings.Split(*state, ",") {
			if !store.ForwardState(s).Known() {
				return usageError("forward list: --state %q is not a forward state (pending, delivered, failed, paused)", s)
			}
		}
		q.Set("state", *state)
	}
	if *limit < 1 {
		return usageError("forward list: --limit %d must be 1 or more", *limit)
	}
	if *cursor != "" {
		q.Set("cursor", *cursor)
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	forwards, next, err := c.listForwards(ctx, q, *limit, store.MaxLimit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, map[string]any{"forwards": forwards, "nextCursor": next})
	}
	if err := writeForwardsTable(stdout, forwards); err != nil {
		return err
	}
	if next != "" {
		// On stderr, so that stdout stays a table that scripts can cut.
		cmd := "nouvelhook forward list"
		if *state != "" {
			cmd += " --state " + *state
		}
		if *limit != defaultForwardListLimit {
			cmd += " --limit " + strconv.Itoa(*limit)
		}
		fmt.Fprintln(stderr, "more: "+cmd+" --cursor "+next)
	}
	return nil
}

func forwardRetry(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward retry", "forward retry JOBID...\n\n"+
		"Sends these jobs to the app again: each job's forward, failed, paused or delivered,\n"+
		"is queued due now with its attempts reset, and a pause after the app's 410 ends.\n"+
		"All or none: an unknown job, or one that has not ended, queues nothing.", stderr)
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, ids, 1, -1, "JOBID"); err != nil {
		return err
	}
	if err := checkJobIDs("forward retry", ids); err != nil {
		return err
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	var ans struct {
		Queued int `json:"queued"`
	}
	if _, err := c.post(ctx, "/v1/forwards/retry", map[string][]string{"jobIds": ids}, &ans); err != nil {
		return err
	}
	fmt.Fprintln(stdout, queuedLine(ans.Queued))
	return nil
}

func forwardReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward replay", "forward replay --after SEQ\n\n"+
		"Sends again every job with a seq after SEQ, whatever its forward's state, each due\n"+
		"now with its attempts reset. --after 0 sends every job in the log; a job's seq is\n"+
		"in jobs list --json and in the forwards the app received.", stderr)
	after := fs.Int64("after", 0, "replay the jobs with a seq after this `SEQ`; required")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "after" })
	switch {
	case !given:
		fs.Usage()
		return usageError("forward replay: --after SEQ is required (--after 0 sends every job again)")
	case *after < 0:
		return usageError("forward replay: --after %d must be 0 or more", *after)
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	var ans struct {
		Queued int `json:"queued"`
	}
	if _, err := c.post(ctx, "/v1/forwards/replay", map[string]int64{"after": *after}, &ans); err != nil {
		return err
	}
	fmt.Fprintln(stdout, queuedLine(ans.Queued))
	return nil
}

// queuedLine says how many forwards a retry or replay queued.
func queuedLine(n int) string {
	if n == 1 {
		return "1 forward queued"
	}
	return strconv.Itoa(n) + " forwards queued"
}

// listForwards gets up to limit forwards matching q, in the queue's order;
// see listPages.
func (c *adminClient) listForwards(ctx context.Context, q url.Values, limit, pageSize int) ([]store.QueuedForward, string, error) {
	return listPages[store.QueuedForward](ctx, c, "/v1/forwards", "forwards", q, limit, pageSize)
}
