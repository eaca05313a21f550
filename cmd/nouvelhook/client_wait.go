package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// maxPoll is the longest long-poll one "jobs wait" request asks for: a fresh
// request every 30 s outlives proxies that drop idle connections.
const maxPoll = 30 * time.Second

func jobsWait(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs wait", "jobs wait JOBID [--timeout D]\n\n"+
		"Waits until the job ends and prints its final status. A job the service\n"+
		"does not know yet is waited for too.\n"+
		"Exit status: 0 completed; 1 partial, failed, cancelled, expired or not_found;\n"+
		"2 timeout or error.", stderr)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this `duration`; 0 waits without limit")
	id, err := parseJobID(fs, args)
	if err != nil {
		return err
	}
	if *timeout < 0 {
		return usageError("jobs wait: --timeout %s must not be negative", *timeout)
	}
	c, err := newAdminClient(getenv)
	if err != nil {
		return err
	}
	j, err := waitJob(ctx, c, id, *timeout)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintln(stdout, statusLine(j))
	if j.Status != store.StatusCompleted {
		return &exitError{code: 1, err: fmt.Errorf("job %s ended %s", id, j.Status)}
	}
	return nil
}

// retryPause is how long "jobs wait" pauses before asking again after the
// service went away, as it does while restarting.
const retryPause = time.Second

// waitJob long-polls job id until it is terminal, or until timeout (0: no
// limit) has passed. A 404 is not an answer: the job may reach the service
// after the waiter starts, from a webhook or a track. Once the service has
// answered, a 502, 503, 504 or a lost connection is a restart to wait out,
// not an end; a service never reached is an error at once. An answer that
// comes back well before its wait (a service shutting down ends long-polls
// at once) is followed by a pause, so the loop never spins.
func waitJob(ctx context.Context, c *adminClient, id string, timeout time.Duration) (store.Job, error) {
	start := time.Now()
	state := "not known to the service"
	answered := false
	for {
		wait := maxPoll
		if timeout > 0 {
			if wait = min(wait, timeout-time.Since(start)); wait <= 0 {
				return store.Job{}, fmt.Errorf("timed out after %s waiting for job %s (%s)", timeout, id, state)
			}
		}
		asked := time.Now()
		// A service that accepts but never answers cannot hold the waiter
		// past its own timeout by more than a little.
		rctx, cancel := context.WithTimeout(ctx, wait+5*time.Second)
		j, err := c.job(rctx, id, wait)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return store.Job{}, fmt.Errorf("interrupted while waiting for job %s (%s)", id, state)
		case isNotFound(err):
			answered = true
		case err != nil && answered && restarting(err):
		case err != nil:
			return store.Job{}, err
		case j.Status.Terminal():
			return j, nil
		default:
			state, answered = "status "+string(j.Status), true
		}
		if time.Since(asked) < wait/2 {
			select {
			case <-ctx.Done():
			case <-time.After(min(retryPause, wait)):
			}
		}
	}
}

// restarting reports whether err looks like a service, or the proxy in front
// of it, in the middle of a restart: no connection, or a 502, 503 or 504.
func restarting(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return true
	}
	switch ae.status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// statusLine is what "jobs wait" prints: "ID STATUS (SOURCE)".
func statusLine(j store.Job) string {
	if j.Source == "" {
		return j.JobID + " " + string(j.Status)
	}
	return fmt.Sprintf("%s %s (%s)", j.JobID, j.Status, j.Source)
}
