package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/bench/internal/loadgen"
)

// readPostgres counts the jobs and deliveries in the target's schema after
// its replicas have ended, and looks up every job t was answered 200 for.
func readPostgres(ctx context.Context, base string, t *target) (storeCounts, error) {
	var c storeCounts
	err := loadgen.WithConn(ctx, base, func(conn *pgx.Conn) error {
		s := t.pg.Schema
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM `+s+`.jobs`).Scan(&c.Jobs); err != nil {
			return fmt.Errorf("count jobs: %w", err)
		}
		if err := conn.QueryRow(ctx, `SELECT COALESCE(SUM(copies), 0),
			COALESCE(SUM(copies) FILTER (WHERE outcome IN ('duplicate', 'conflict')), 0) FROM `+s+`.deliveries`).
			Scan(&c.Deliveries, &c.Duplicates); err != nil {
			return fmt.Errorf("count deliveries: %w", err)
		}
		rows, err := conn.Query(ctx, `SELECT job_id FROM `+s+`.jobs WHERE terminal`)
		if err != nil {
			return err
		}
		have := make(map[string]struct{}, c.Jobs)
		var id string
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			have[id] = struct{}{}
			return nil
		}); err != nil {
			return err
		}
		c.missing, c.firstMissed = missingAcked(t, have)
		return nil
	})
	return c, err
}

// missingAcked counts the new jobs t was answered 200 for that are not in
// have, and names the first.
func missingAcked(t *target, have map[string]struct{}) (n int64, first string) {
	for _, w := range t.workers {
		for _, id := range w.Acked {
			if _, ok := have[id]; !ok {
				if n == 0 {
					first = id
				}
				n++
			}
		}
	}
	return n, first
}

// pgSampler measures the CPU Postgres spends on the benchmark: every
// `postgres` process on the machine, from /proc, except client backends
// that are not the benchmark's (other users of the same server), which
// pg_stat_activity tells apart by backend_type and application_name.
// Without a database (no Postgres target) it measures nothing.
type pgSampler struct {
	base string
	on   bool
}

// pgSample is the CPU used so far by each postgres process, and which
// processes are other clients' backends.
type pgSample struct {
	cpu     map[int]time.Duration
	foreign map[int]bool
}

func (s *pgSampler) sample(ctx context.Context) (pgSample, error) {
	smp := pgSample{cpu: map[int]time.Duration{}, foreign: map[int]bool{}}
	if !s.on {
		return smp, nil
	}
	err := loadgen.WithConn(ctx, s.base, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT pid, COALESCE(backend_type, ''), COALESCE(application_name, '') FROM pg_stat_activity`)
		if err != nil {
			return err
		}
		var pid int
		var kind, app string
		_, err = pgx.ForEachRow(rows, []any{&pid, &kind, &app}, func() error {
			if kind == "client backend" && !strings.HasPrefix(app, loadgen.AppPrefix) {
				smp.foreign[pid] = true
			}
			return nil
		})
		return err
	})
	if err != nil {
		return smp, fmt.Errorf("pg_stat_activity: %w", err)
	}
	smp.cpu, err = postgresCPU()
	return smp, err
}

// since is the CPU the benchmark's postgres processes used between a and
// b. A process gone by b is not counted; one new since a counts whole.
// Our own query's backend is foreign: it ends, and counts as a client.
func (b pgSample) since(a pgSample) time.Duration {
	var d time.Duration
	for pid, t := range b.cpu {
		if b.foreign[pid] || a.foreign[pid] {
			continue
		}
		d += t - a.cpu[pid]
	}
	return d
}

// postgresCPU reads the user plus system CPU of every process whose
// command is postgres.
func postgresCPU() (map[int]time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]time.Duration{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != "postgres" {
			continue
		}
		d, err := loadgen.StatCPU(b)
		if err != nil {
			return nil, err
		}
		out[pid] = d
	}
	return out, nil
}

// waitSampler samples, every interval, what the target's backends are
// doing (pg_stat_activity's state and wait event), to tell where a Postgres
// target's time goes: on the CPU, flushing WAL, or waiting for a lock.
type waitSampler struct {
	counts map[string]int
	total  int
	done   chan struct{}
	stop   context.CancelFunc
}

// sampleWaits starts sampling the backends named app until stop.
func (s *pgSampler) sampleWaits(ctx context.Context, app string, interval time.Duration) *waitSampler {
	ctx, cancel := context.WithCancel(ctx)
	w := &waitSampler{counts: map[string]int{}, done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(w.done)
		c, err := pgx.Connect(ctx, s.base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rows, err := c.Query(ctx, `SELECT COALESCE(state, ''), COALESCE(wait_event_type, ''), COALESCE(wait_event, '')
				FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'`, app)
			if err != nil {
				return
			}
			var state, kind, event string
			_, err = pgx.ForEachRow(rows, []any{&state, &kind, &event}, func() error {
				key := "cpu"
				switch {
				case state == "idle":
					key = "idle"
				case kind != "":
					key = kind + ":" + event
				}
				w.counts[key]++
				w.total++
				return nil
			})
			if err != nil {
				return
			}
		}
	}()
	return w
}

// finish stops sampling and returns the shares of the samples, largest
// first, as "cpu 40%, IO:WALSync 30%, …" (idle backends included).
func (w *waitSampler) finish() string {
	w.stop()
	<-w.done
	if w.total == 0 {
		return "no samples"
	}
	keys := make([]string, 0, len(w.counts))
	for k := range w.counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return w.counts[b] - w.counts[a] })
	parts := make([]string, 0, 6)
	for i, k := range keys {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(w.counts[k])/float64(w.total)))
	}
	return strings.Join(parts, ", ")
}
