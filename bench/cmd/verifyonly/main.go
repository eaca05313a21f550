// Command verifyonly is the load benchmark's baseline: nouvelhook's own
// public Echo server (handler.NewPublic: body limit, HMAC verification,
// parsing, metrics, the JSON answer) with a recorder that stores nothing.
// Compared with the real binary it shows what the durable commit costs.
//
//	verifyonly -listen 127.0.0.1:0 -secret S
//
// It logs one JSON line with public_addr once it listens, and stops on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/bench/internal/benchsrv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "verifyonly: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("verifyonly", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "public listener `address`")
	secret := fs.String("secret", "", "signing `secret`s, comma-separated (default $NOUVEL_WEBHOOK_SECRET)")
	level := fs.String("log-level", "info", "zerolog `level`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = getenv("NOUVEL_WEBHOOK_SECRET")
	}
	if *secret == "" {
		return errors.New("-secret or NOUVEL_WEBHOOK_SECRET is required")
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	return benchsrv.Serve(ctx, benchsrv.Options{
		Listen: *listen, Secrets: strings.Split(*secret, ","),
		Logger: zerolog.New(stderr).Level(lvl).With().Timestamp().Logger(),
	})
}
