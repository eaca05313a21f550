package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ErrTargetsMissed is a driver's result when the figures were measured but
// a target or a check failed: exit status 1.
var ErrTargetsMissed = errors.New("targets missed")

// Main runs a driver's run until it returns or SIGINT or SIGTERM cancels
// its context, and exits: 0 when it succeeded (or printed its --help), 1
// for ErrTargetsMissed, 2 with one line naming the driver for any other
// error.
func Main(name string, run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, ErrTargetsMissed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, name+": "+err.Error())
		os.Exit(2)
	}
}
