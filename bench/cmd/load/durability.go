package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver, as the store does
)

// storeCounts is what nouvelhook holds, from its admin API or its file.
type storeCounts struct {
	Jobs       int64 `json:"jobs"`
	Deliveries int64 `json:"deliveries"`
	Duplicates int64 `json:"duplicates"`
	// missing are acknowledged new jobs not in the file (file only).
	missing     int64
	firstMissed string
}

// adminStats reads GET /v1/stats from the running service.
func adminStats(ctx context.Context, admin string) (storeCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/v1/stats", nil)
	if err != nil {
		return storeCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return storeCounts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return storeCounts{}, fmt.Errorf("GET /v1/stats: %d %s", resp.StatusCode, b)
	}
	var c storeCounts
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// readStore opens nouvelhook's database after the process has ended and
// counts jobs and deliveries, and looks up every job t was answered 200 for
// as new.
func readStore(ctx context.Context, path string, t *target) (storeCounts, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return storeCounts{}, err
	}
	defer db.Close()
	var c storeCounts
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs`).Scan(&c.Jobs); err != nil {
		return c, fmt.Errorf("count jobs: %w", err)
	}
	// Identical bytes for a job are one row, counted in copies.
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(copies), 0), COALESCE(SUM(copies * (outcome IN ('duplicate', 'conflict'))), 0) FROM deliveries`).
		Scan(&c.Deliveries, &c.Duplicates); err != nil {
		return c, fmt.Errorf("count deliveries: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT job_id FROM jobs WHERE terminal = 1`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	have := make(map[string]struct{}, c.Jobs)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return c, err
		}
		have[id] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	c.missing, c.firstMissed = missingAcked(t, have)
	return c, nil
}

// reportDurability compares what nouvelhook answered 200 for with what it
// holds: live through /v1/stats, then in the file after it was stopped.
// With no failed requests the counts must match exactly; a request that
// failed on the client side may still have been committed, so then the
// store may hold more, never less.
func reportDurability(w io.Writer, cfg config, t *target, live storeCounts, liveErr error,
	stored storeCounts, storedErr error) bool {
	acked, ackedNew := t.all.OK, t.all.OKNew
	exact := t.all.Failures() == 0
	match := func(got, want int64) bool { return got == want || (!exact && got >= want) }
	fmt.Fprintf(w, "\ndurability of %s: answered 200 to %d deliveries, %d of them new jobs (warm-up included)\n", t.name, acked, ackedNew)
	v := verdicts{w: w, all: true}
	if liveErr != nil {
		v.check(false, "GET /v1/stats while running: %v", liveErr)
	} else {
		v.check(match(live.Jobs, ackedNew) && match(live.Deliveries, acked),
			"GET /v1/stats while running: %d jobs, %d deliveries", live.Jobs, live.Deliveries)
	}
	how := map[string]string{"kill": "SIGKILL", "term": "SIGTERM"}[cfg.stopSignal]
	if storedErr != nil {
		v.check(false, "database after %s: %v", how, storedErr)
		return false
	}
	if len(t.srvs) > 1 {
		how = fmt.Sprintf("%s of all %d replicas", how, len(t.srvs))
	}
	v.check(match(stored.Jobs, ackedNew) && match(stored.Deliveries, acked),
		"database after %s: %d jobs, %d deliveries (%d duplicates)", how, stored.Jobs, stored.Deliveries, stored.Duplicates)
	if stored.missing > 0 {
		v.check(false, "%d acknowledged jobs missing from the database, e.g. %s", stored.missing, stored.firstMissed)
	} else {
		v.check(true, "every acknowledged job id is in the database")
	}
	return v.all
}

func numCPU() int { return runtime.NumCPU() }

// verdicts prints PASS or FAIL lines and remembers whether all passed.
type verdicts struct {
	w   io.Writer
	all bool
}

func (v *verdicts) check(pass bool, format string, args ...any) {
	verdict := "PASS"
	if !pass {
		verdict, v.all = "FAIL", false
	}
	fmt.Fprintf(v.w, "  %s  %s\n", verdict, fmt.Sprintf(format, args...))
}
