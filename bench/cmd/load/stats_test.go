package main

import (
	"io"
	"slices"
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
		append(bins, "-targets", "sqlite,pg2"),
		append(bins, "-targets", ""),
		{"-profile", "/tmp/x"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

func TestParseTargets(t *testing.T) {
	bins := []string{"-nouvelhook", "a", "-benchserve", "b"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"sqlite"}},
		{[]string{"-targets", "pg3,sqlite, pg1"}, []string{"sqlite", "pg1", "pg3"}},
		{[]string{"-targets", "pg1,pg1"}, []string{"pg1"}},
	} {
		c, err := parseFlags(append(bins, tc.args...), io.Discard)
		if err != nil {
			t.Fatalf("parseFlags(%q): %v", tc.args, err)
		}
		if !slices.Equal(c.targets, tc.want) {
			t.Errorf("parseFlags(%q): targets %q, want %q", tc.args, c.targets, tc.want)
		}
	}
}

func TestPGSampleSince(t *testing.T) {
	a := pgSample{
		cpu:     map[int]time.Duration{1: 10 * time.Second, 2: time.Second, 3: 5 * time.Second, 4: time.Second},
		foreign: map[int]bool{3: true},
	}
	b := pgSample{
		// 1 (postmaster or our backend) grew 2 s, 2 ended, 3 is another
		// client's backend, 5 is new, 4 became another client's (its pid reused).
		cpu:     map[int]time.Duration{1: 12 * time.Second, 3: 9 * time.Second, 4: 3 * time.Second, 5: 500 * time.Millisecond},
		foreign: map[int]bool{3: true, 4: true},
	}
	if got, want := b.since(a), 2500*time.Millisecond; got != want {
		t.Errorf("since = %v, want %v", got, want)
	}
}
