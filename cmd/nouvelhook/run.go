package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

const usage = `nouvelhook receives Nouvel's signed webhooks into a durable local job log.

Usage:
  nouvelhook serve [flags]            run the receiver, the reconciler and the admin API
  nouvelhook jobs list [flags]        the job log, newest first
  nouvelhook jobs show JOBID [--json] one job, with its deliveries
  nouvelhook jobs wait JOBID [--timeout D]
                                      wait until the job ends (exit 0 completed,
                                      1 partial/failed/cancelled, 2 timeout or error)
  nouvelhook track JOBID...           have the service reconcile jobs submitted elsewhere
  nouvelhook submit --url U [flags]   submit a generate request through the service
  nouvelhook forward list [flags]     the forwarding queue to the app
  nouvelhook forward retry JOBID...   send these jobs to the app again
  nouvelhook forward replay --after SEQ
                                      send every job after seq SEQ to the app again
  nouvelhook sign [--secret S] [FILE] print the signature of a body (stdin without FILE)
  nouvelhook demo                     run the service against a stand-in Nouvel
  nouvelhook db backup FILE           a consistent copy of the SQLite log while serve runs
  nouvelhook db copy SRC DST          copy a whole log into an empty one, SQLite to Postgres or back
  nouvelhook healthcheck [--ready]    exit 0 if the local service answers /healthz
                                      (or /readyz) on its public listener
  nouvelhook version                  version, commit and Go version (also --version)

Run "nouvelhook COMMAND --help" for a command's flags.
`

// exitError carries a specific exit status out of run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake in the command line: exit status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// exitCode prints err as one line on stderr and returns the exit status:
// 0 for none (or a --help), the exitError's code, or 1.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "nouvelhook: "+strings.ReplaceAll(err.Error(), "\n", " "))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// run is the whole program: it returns instead of exiting, so tests can run
// it in process.
func run(ctx context.Context, args []string, getenv func(string) string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError("no command given")
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stderr)
	case "jobs":
		return runJobs(ctx, rest, getenv, stdout, stderr)
	case "track":
		return runTrack(ctx, rest, getenv, stdout, stderr)
	case "submit":
		return runSubmit(ctx, rest, getenv, stdout, stderr)
	case "forward":
		return runForward(ctx, rest, getenv, stdout, stderr)
	case "sign":
		return runSign(rest, getenv, stdin, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stderr)
	case "db":
		return runDB(ctx, rest, getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError("unknown command %q (run nouvelhook --help)", cmd)
}
