package main

import (
	"context"
	"time"

	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

// startServer runs bin serve with env, its log in logPath, and waits until
// it listens and answers /healthz.
func startServer(ctx context.Context, bin string, env []string, logPath string) (*loadgen.Server, error) {
	return loadgen.StartServer(ctx, "nouvelhook", bin, []string{"serve"}, env, logPath)
}

// cpuTime is the server's user plus system CPU so far; 0 when it cannot be
// read (the round then shows none).
func cpuTime(s *loadgen.Server) time.Duration {
	d, _ := s.CPUTime()
	return d
}

// peakRSS is the server's peak resident set in bytes; 0 when unreadable.
func peakRSS(s *loadgen.Server) int64 {
	p, _, _ := s.Memory()
	return p
}
