package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

// roundStat is one target's figures for one timed round.
type roundStat struct {
	rps       float64
	p50, p99  time.Duration
	p999, max time.Duration
	cpuPerReq time.Duration // server CPU per answered request
	srvCores  float64       // server CPU time / wall time
	loadCores float64       // load generator CPU time / wall time
	// otherCores is the CPU everything else on the machine used meanwhile:
	// other tenants' noise, which the alternating rounds spread over both.
	otherCores float64
	// pgCores and pgPerReq are what the Postgres server spent meanwhile
	// (its processes but other clients' backends; see pgSampler).
	pgCores    float64
	pgPerReq   time.Duration
	ok, failed int64
}

func newRoundStat(r *loadgen.Result, srvCPU, loadCPU, allCPU, pgCPU time.Duration) roundStat {
	lat := slices.Clone(r.Latencies)
	slices.Sort(lat)
	st := roundStat{
		p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), p999: percentile(lat, 0.999),
		ok: r.OK, failed: r.Failures(),
	}
	if len(lat) > 0 {
		st.max = lat[len(lat)-1]
	}
	if secs := r.Elapsed.Seconds(); secs > 0 {
		st.rps = float64(r.OK) / secs
		st.srvCores = srvCPU.Seconds() / secs
		st.loadCores = loadCPU.Seconds() / secs
		st.pgCores = pgCPU.Seconds() / secs
		st.otherCores = max(0, (allCPU-srvCPU-loadCPU-pgCPU).Seconds()/secs)
	}
	if r.OK > 0 {
		st.cpuPerReq = srvCPU / time.Duration(r.OK)
		st.pgPerReq = pgCPU / time.Duration(r.OK)
	}
	return st
}

// percentile is the exact q-quantile of sorted samples (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// medianStat is the median of each figure over rounds, taken figure by
// figure; failures are summed, since any failure matters.
func medianStat(rounds []roundStat) roundStat {
	pick := func(f func(roundStat) float64) float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		n := len(v)
		if n == 0 {
			return 0
		}
		if n%2 == 1 {
			return v[n/2]
		}
		return (v[n/2-1] + v[n/2]) / 2
	}
	dur := func(f func(roundStat) time.Duration) time.Duration {
		return time.Duration(pick(func(r roundStat) float64 { return float64(f(r)) }))
	}
	m := roundStat{
		rps:        pick(func(r roundStat) float64 { return r.rps }),
		p50:        dur(func(r roundStat) time.Duration { return r.p50 }),
		p99:        dur(func(r roundStat) time.Duration { return r.p99 }),
		p999:       dur(func(r roundStat) time.Duration { return r.p999 }),
		max:        dur(func(r roundStat) time.Duration { return r.max }),
		cpuPerReq:  dur(func(r roundStat) time.Duration { return r.cpuPerReq }),
		srvCores:   pick(func(r roundStat) float64 { return r.srvCores }),
		loadCores:  pick(func(r roundStat) float64 { return r.loadCores }),
		otherCores: pick(func(r roundStat) float64 { return r.otherCores }),
		pgCores:    pick(func(r roundStat) float64 { return r.pgCores }),
		pgPerReq:   dur(func(r roundStat) time.Duration { return r.pgPerReq }),
	}
	for _, r := range rounds {
		m.ok += r.ok
		m.failed += r.failed
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

func printRound(w io.Writer, round, rounds int, name string, s roundStat, showPG bool) {
	pg := ""
	if showPG {
		pg = fmt.Sprintf("  postgres %5s/req (%.2f cores)", us(s.pgPerReq), s.pgCores)
	}
	fmt.Fprintf(w, "  round %d/%d  %-12s %8.0f req/s  p50 %8s  p99 %8s  p99.9 %8s  max %8s  srv cpu %5s/req (%.2f cores)%s  load gen %.2f  other %.2f cores  failed %d\n",
		round, rounds, name, s.rps, ms(s.p50), ms(s.p99), ms(s.p999), ms(s.max), us(s.cpuPerReq), s.srvCores, pg, s.loadCores, s.otherCores, s.failed)
}
