// Command nouvelhook receives Nouvel's signed webhooks into a durable local
// job log, polls Nouvel for what the webhooks missed, and answers the app's
// questions about its jobs. Run "nouvelhook --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
