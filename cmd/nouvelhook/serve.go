package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/forward"
	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/reconcile"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// shutdownGrace is how long SIGTERM waits for requests in flight.
const shutdownGrace = 15 * time.Second

// webhooksBusyAt is how many webhook requests in flight make the forwarder
// give way (forward.Options.Busy): it then sends one forward at a time, at
// most one every 50 ms, until fewer are in flight. The count is the simplest sign that the
// webhook path is saturated: a webhook holds its request open until its
// commit, so during a burst the count sits near the number of Nouvel's
// connections, and between deliveries it is 0 to 2. A burst is when forwards
// cost the most, as they take CPU from webhooks whose 200 must come within
// Nouvel's 5 s, while a forward can wait; and the forwarder cannot keep up
// with a burst's ends anyway, so it catches up once the burst ends.
const webhooksBusyAt = 8

func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &exitError{code: 2, err: flagError(err)}
	}
	log := newLogger(cfg, stderr)
	return serve(ctx, cfg, log, nil)
}

// serve runs the service until ctx ends, then shuts down in order: stop
// taking requests and finish those in flight, stop the reconciler and the
// forwarder, then close the store. ready, when not nil, is told the base
// URLs of the public and admin listeners once both listen.
func serve(ctx context.Context, cfg config.Config, log zerolog.Logger, ready func(public, admin string)) error {
	st, err := openStore(ctx, cfg, log.With().Str("component", "store").Logger())
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error().Err(err).Msg("close store")
		}
	}()

	deps := handler.Deps{
		Store: st, Verifier: handler.NewVerifier(cfg.WebhookSecrets), Metrics: handler.NewMetrics(st),
		Logger: log, WebhookPath: cfg.WebhookPath, MaxBody: cfg.MaxBody, AdminToken: cfg.AdminToken,
		AdminHost: adminHost(cfg.AdminListen),
	}
	if cfg.APIKey != "" {
		rec := reconcile.New(reconcile.Options{
			Store: st, Client: reconcile.NewClient(cfg.APIBaseURL, cfg.APIKey, nil),
			Budget: cfg.PollBudget, Interval: cfg.PollInterval, TTL: cfg.TrackTTL,
			MissedGrace: cfg.MissedGrace, WebhookURL: cfg.WebhookURL(), Logger: log,
			Registerer: deps.Metrics.Registry,
		})
		rec.Start()
		defer rec.Close() // runs before the store closes
		deps.Poller = rec
	} else {
		log.Warn().Msg("NOUVEL_API_KEY is not set: the reconciler is off, and jobs whose webhook is lost stay unknown")
		reconcile.RegisterIdleMetrics(deps.Metrics.Registry) // at 0, so alert rules find them
	}
	if cfg.ForwardURL != "" {
		metrics := deps.Metrics
		fwd, err := forward.New(forward.Options{
			Store: st, URL: cfg.ForwardURL, NouvelSecret: cfg.WebhookSecrets[0], Key: cfg.ForwardKey,
			Schedule: cfg.ForwardSchedule, Timeout: cfg.ForwardTimeout, Concurrency: cfg.ForwardConcurrency,
			Ordered: cfg.ForwardOrdered, Logger: log,
			Registerer: deps.Metrics.Registry, Version: version,
			Busy: func() bool { return metrics.WebhooksInFlight() >= webhooksBusyAt },
		})
		if err != nil {
			return err // the settings were validated: this is a defect, said in one line
		}
		fwd.Start()
		defer fwd.Close() // runs before the store closes: an attempt in flight ends first
		deps.Forwarder = fwd
	}
	if cfg.Retain > 0 {
		ret := newRetainer(st, cfg.Retain, nil, log)
		ret.Start(ctx)
		defer ret.Close() // runs before the store closes
	}
	pubLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("NOUVELHOOK_LISTEN %s: %w", cfg.Listen, err)
	}
	// Past the cap, connections wait in the kernel's backlog until one
	// closes or a stalled one is cut, rather than being accepted and starved.
	pubLn = handler.NewShedListener(pubLn, cfg.MaxConns, handler.ShedGrace)
	admLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		pubLn.Close()
		return fmt.Errorf("NOUVELHOOK_ADMIN_LISTEN %s: %w", cfg.AdminListen, err)
	}

	// Long-polls and event streams end when the admin base context does, so
	// they do not hold up shutdown; webhooks in flight are left to finish.
	admCtx, cancelAdm := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAdm()
	servers := []*http.Server{
		httpServer(handler.NewPublic(deps), context.WithoutCancel(ctx)),
		httpServer(handler.NewAdmin(deps), admCtx),
	}
	errc := make(chan error, len(servers))
	for i, ln := range []net.Listener{pubLn, admLn} {
		go func() {
			if err := servers[i].Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info().Object("config", cfg).Str("version", version).Str("go", runtime.Version()).
		Str("public_addr", pubLn.Addr().String()).Str("admin_addr", admLn.Addr().String()).
		Msg("nouvelhook listening")
	if ready != nil {
		ready("http://"+pubLn.Addr().String(), "http://"+admLn.Addr().String())
	}

	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down: finishing requests in flight")
	case err = <-errc:
		log.Error().Err(err).Msg("server failed; shutting down")
	}
	cancelAdm()
	// Both at once: the admin listener must not keep taking requests while
	// the public one drains.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if serr := s.Shutdown(sctx); serr != nil {
				log.Error().Err(serr).Msg("shutdown")
			}
		})
	}
	wg.Wait()
	log.Info().Msg("stopped")
	return err
}

// openStore opens the backend NOUVELHOOK_DB names: Postgres for a
// postgres:// URL, else the SQLite file, queueing each job's forward as it
// ends when NOUVELHOOK_FORWARD_URL is set. Its errors name the variable;
// the backends name the path, or the URL with its password masked.
func openStore(ctx context.Context, cfg config.Config, log zerolog.Logger) (store.Store, error) {
	forwarding := cfg.ForwardURL != ""
	if cfg.DBBackend() == config.BackendPostgres {
		st, err := postgres.Open(ctx, cfg.DBPath, postgres.Options{Logger: log, Forward: forwarding})
		if err != nil {
			return nil, fmt.Errorf("NOUVELHOOK_DB: %w", err)
		}
		return st, nil
	}
	st, err := sqlite.Open(ctx, cfg.DBPath, sqlite.Options{Logger: log, MaxBody: cfg.MaxBody, Forward: forwarding})
	if err != nil {
		return nil, fmt.Errorf("NOUVELHOOK_DB: %w", err)
	}
	return st, nil
}

// adminHost is the host part of the admin listen address, which the admin
// API also accepts as Host without a token.
func adminHost(listen string) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return host
}

func httpServer(e *echo.Echo, base context.Context) *http.Server {
	s := e.Server
	s.Handler = e
	s.BaseContext = func(net.Listener) context.Context { return base }
	return s
}
