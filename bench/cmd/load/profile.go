package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

// runProfile runs the same load against benchserve, once wired to a real
// store and once storing nothing, and saves each one's CPU, block, mutex and
// heap profiles and a short execution trace into cfg.profile.
func runProfile(ctx context.Context, cfg config, getenv func(string) string, dir string, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.profile, 0o750); err != nil {
		return err
	}
	if err := removeDB(filepath.Join(dir, "profile.db")); err != nil {
		return err
	}
	for _, p := range []struct{ name, db string }{
		{"store", filepath.Join(dir, "profile.db")},
		{"verifyonly", ""},
	} {
		args := []string{"-listen", "127.0.0.1:0", "-pprof", "127.0.0.1:0",
			"-block-rate", "10000", "-mutex-fraction", "10", "-db", p.db}
		srv, err := loadgen.StartServer(ctx, "benchserve-"+p.name, cfg.benchserve, args,
			serverEnv(getenv, "NOUVEL_WEBHOOK_SECRET="+cfg.secret), filepath.Join(dir, "benchserve-"+p.name+".log"))
		if err != nil {
			return err
		}
		err = profileOne(ctx, cfg, srv, p.name, stdout)
		srv.Stop(syscall.SIGTERM)
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nprofiles in %s; e.g.\n  go tool pprof -top %s\n  go tool pprof -top %s\n  go tool trace %s\n",
		cfg.profile, filepath.Join(cfg.profile, "store-cpu.pprof"), filepath.Join(cfg.profile, "store-block.pprof"),
		filepath.Join(cfg.profile, "store-trace.out"))
	return nil
}

func profileOne(ctx context.Context, cfg config, srv *loadgen.Server, name string, stdout io.Writer) error {
	t := &target{name: "benchserve-" + name, srvs: []*loadgen.Server{srv}, checkDup: name == "store", workers: loadgen.NewWorkers(cfg.conns, bench.RunID())}
	t.all.BadStatus = map[int]int64{}
	if cfg.warmup > 0 {
		if _, err := t.phase(ctx, cfg, cfg.warmup); err != nil {
			return err
		}
	}
	secs := max(1, int(cfg.duration.Seconds())-1)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	profile := func(i int, path, file string) {
		wg.Go(func() { errs[i] = fetchTo(ctx, srv.Pprof, path, filepath.Join(cfg.profile, name+"-"+file)) })
	}
	profile(0, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu.pprof")
	profile(1, "/debug/pprof/trace?seconds=2", "trace.out")
	// With seconds, block and mutex are deltas over the timed phase.
	profile(2, fmt.Sprintf("/debug/pprof/block?seconds=%d", secs), "block.pprof")
	profile(3, fmt.Sprintf("/debug/pprof/mutex?seconds=%d", secs), "mutex.pprof")
	srv0, _ := srv.CPUTime()
	load0, all0 := loadgen.SelfCPU(), loadgen.MachineCPU()
	r, err := t.phase(ctx, cfg, cfg.duration)
	srv1, _ := srv.CPUTime()
	load1, all1 := loadgen.SelfCPU(), loadgen.MachineCPU()
	wg.Wait()
	if err != nil {
		return err
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	if err := fetchTo(ctx, srv.Pprof, "/debug/pprof/heap", filepath.Join(cfg.profile, name+"-heap.pprof")); err != nil {
		return err
	}
	peak, _, _ := srv.Memory()
	printRound(stdout, 1, 1, t.name, newRoundStat(r, srv1-srv0, load1-load0, all1-all0, 0), false)
	fmt.Fprintf(stdout, "    peak RSS %s", mb(peak))
	if r.FirstError != "" {
		fmt.Fprintf(stdout, "; first failure: %s", r.FirstError)
	}
	fmt.Fprintln(stdout)
	return nil
}

func fetchTo(ctx context.Context, addr, path, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := fetch(ctx, addr, path, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fetch(ctx context.Context, addr, path string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
