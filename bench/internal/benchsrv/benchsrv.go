// Package benchsrv runs nouvelhook's public webhook server outside the
// product binary, for the benchmark: as the verify-only baseline (a recorder
// that stores nothing) or wired to a real store like `nouvelhook serve`, and
// optionally with net/http/pprof on a listener of its own. It exists only
// under bench/; the product never serves pprof.
package benchsrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// WebhookPath is the path the benchmark posts to: nouvelhook's default.
const WebhookPath = "/webhooks/nouvel"

// MaxBody is nouvelhook's default body limit, 1 MiB.
const MaxBody = 1 << 20

// shutdownGrace is how long a stop waits for requests in flight.
const shutdownGrace = 5 * time.Second

// Discard is a handler.Recorder that stores nothing: it answers as the
// store would for a new job (accepted, or invalid for an unusable body)
// without touching a disk. It is the baseline's recorder.
type Discard struct{}

// RecordWebhook returns store.OutcomeAccepted, or store.OutcomeInvalid when
// the delivery carries no usable report, and never an error.
func (Discard) RecordWebhook(_ context.Context, d store.WebhookDelivery) (store.Outcome, error) {
	if d.Report == nil {
		return store.OutcomeInvalid, nil
	}
	return store.OutcomeAccepted, nil
}

// Options say what to serve.
type Options struct {
	// Listen is the public listener's address, e.g. 127.0.0.1:0.
	Listen string
	// Secrets verify signatures, as NOUVEL_WEBHOOK_SECRET's list does.
	Secrets []string
	// DB, when set, is a SQLite file the deliveries are committed to, as
	// `nouvelhook serve` does; empty means Discard.
	DB string
	// Pprof, when set, is the address net/http/pprof is served on.
	Pprof string
	// BlockProfileRate and MutexProfileFraction, when above 0, turn on
	// those profiles (see package runtime).
	BlockProfileRate, MutexProfileFraction int
	Logger                                 zerolog.Logger
}

// Serve runs the public server until ctx ends, then shuts it down, waiting
// for requests in flight. Once it listens it logs one info line holding
// public_addr (and pprof_addr), the same key `nouvelhook serve` logs, so the
// load driver finds either kind of server the same way.
func Serve(ctx context.Context, o Options) error {
	deps := handler.Deps{
		Verifier: handler.NewVerifier(o.Secrets), Logger: o.Logger,
		WebhookPath: WebhookPath, MaxBody: MaxBody,
	}
	if o.DB != "" {
		st, err := sqlite.Open(ctx, o.DB, sqlite.Options{Logger: o.Logger.With().Str("component", "store").Logger()})
		if err != nil {
			return fmt.Errorf("open store %s: %w", o.DB, err)
		}
		defer st.Close()
		deps.Store, deps.Metrics = st, handler.NewMetrics(st)
	} else {
		deps.Recorder, deps.Metrics = Discard{}, handler.NewMetrics(nil)
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	e := handler.NewPublic(deps)
	servers := []*http.Server{e.Server}
	e.Server.Handler = e
	listeners := []net.Listener{ln}
	line := o.Logger.Info().Str("public_addr", ln.Addr().String())
	if o.Pprof != "" {
		pln, err := net.Listen("tcp", o.Pprof)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen %s: %w", o.Pprof, err)
		}
		setProfileRates(o.BlockProfileRate, o.MutexProfileFraction)
		servers = append(servers, &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, pln)
		line = line.Str("pprof_addr", pln.Addr().String())
	}

	errc := make(chan error, len(servers))
	for i := range servers {
		go func() {
			if err := servers[i].Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	line.Bool("store", o.DB != "").Msg("benchsrv listening")

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func setProfileRates(block, mutex int) {
	if block > 0 {
		runtime.SetBlockProfileRate(block)
	}
	if mutex > 0 {
		runtime.SetMutexProfileFraction(mutex)
	}
}
