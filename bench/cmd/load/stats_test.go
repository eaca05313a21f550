package main

import (
	"io"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(s, tc.q); got != tc.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestMedianStat(t *testing.T) {
	rounds := []roundStat{
		{rps: 300, p99: 9 * time.Millisecond, failed: 1},
		{rps: 100, p99: 30 * time.Millisecond},
		{rps: 200, p99: 10 * time.Millisecond, failed: 2},
	}
	m := medianStat(rounds)
	if m.rps != 200 || m.p99 != 10*time.Millisecond || m.failed != 3 {
		t.Errorf("got rps %v p99 %v failed %d, want 200 10ms 3", m.rps, m.p99, m.failed)
	}
	if m := medianStat(rounds[:2]); m.rps != 200 {
		t.Errorf("median of two: got rps %v, want their mean 200", m.rps)
	}
}

func TestParseFlags(t *testing.T) {
	bins := []string{"-nouvelhook", "a", "-benchserve", "b"}
	if _, err := parseFlags(bins, io.Discard); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c, _ := parseFlags(bins, io.Discard)
	if c.conns != 64 || c.rounds != 3 || c.duration != 10*time.Second || c.maxRSS != 50_000_000 {
		t.Errorf("defaults: got conns %d rounds %d duration %v maxRSS %d, want 64 3 10s 50000000",
			c.conns, c.rounds, c.duration, c.maxRSS)
	}
	for _, args := range [][]string{
		nil,
		append(bins, "-dup", "1.5"),
		append(bins, "-conns", "0"),
		append(bins, "-ids", "random"),
		append(bins, "-stop", "int"),
		{"-profile", "/tmp/x"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}
