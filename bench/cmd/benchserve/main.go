// Command benchserve is nouvelhook's public webhook server without the rest
// of the service, for the load benchmark. It serves handler.NewPublic wired
// as `nouvelhook serve` wires it. With -db it commits deliveries to that
// SQLite file, as serve does (for profiling); without -db its recorder
// stores nothing, which is the verify-only baseline. With -pprof it also
// serves net/http/pprof on a listener of its own. The product binary never
// serves pprof.
//
//	benchserve -listen 127.0.0.1:0 -secret S                          # the baseline
//	benchserve -listen 127.0.0.1:0 -pprof 127.0.0.1:0 -db /tmp/p.db   # profiling
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
		fmt.Fprintln(os.Stderr, "benchserve: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "public listener `address`")
	pprofAddr := fs.String("pprof", "", "net/http/pprof listener `address`; empty serves no profiles")
	db := fs.String("db", "", "SQLite `file` to commit to; empty stores nothing (the baseline)")
	secret := fs.String("secret", "", "signing `secret`s, comma-separated (default $NOUVEL_WEBHOOK_SECRET)")
	block := fs.Int("block-rate", 0, "runtime.SetBlockProfileRate `ns`; 0 leaves the block profile off")
	mutex := fs.Int("mutex-fraction", 0, "runtime.SetMutexProfileFraction `n`; 0 leaves the mutex profile off")
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
		Listen: *listen, Secrets: strings.Split(*secret, ","), DB: *db, Pprof: *pprofAddr,
		BlockProfileRate: *block, MutexProfileFraction: *mutex,
		Logger: zerolog.New(stderr).Level(lvl).With().Timestamp().Logger(),
	})
}
