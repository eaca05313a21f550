package postgres

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

// copyable is a log db copy reads from and writes to.
type copyable interface {
	store.Store
	store.Exporter
	store.Importer
}

// fillQueue leaves st with a forward in each state, one of them leased,
// the pause, a retry waiting, an attempt or none for each, and a poll for
// each job; it returns the claim still held (e's).
func fillQueue(t *testing.T, st store.Store) store.ForwardClaim {
	t.Helper()
	ctx := context.Background()
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		if _, _, err := st.Track(ctx, id, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := st.RecordPoll(ctx, id, store.PollResult{Err: "nouvel answered 502", Failed: true, Next: t0}); err != nil {
			t.Fatal(err)
		}
		d := completed(id)
		if _, err := st.RecordWebhook(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	claims, err := st.ClaimForwards(ctx, t0, len(ids), time.Hour, false)
	if err != nil || len(claims) != len(ids) {
		t.Fatalf("claim: got %d, %v; want %d", len(claims), err, len(ids))
	}
	for i, r := range []store.ForwardResult{
		{At: t0, Took: 120 * time.Millisecond, Status: 204, State: store.ForwardDelivered},
		{At: t0, Took: time.Second, Status: 500, Err: "app answered 500", State: store.ForwardFailed},
		{At: t0, Status: 410, Err: "app answered 410 Gone", State: store.ForwardPaused},
		{At: t0, Err: "connection refused", State: store.ForwardPending, Next: t0.Add(time.Minute)},
	} {
		if ok, err := st.FinishForward(ctx, claims[i], r); err != nil || !ok {
			t.Fatalf("finish %s: %v, %v", ids[i], ok, err)
		}
	}
	return claims[4]
}

// queueRows are a log's forward, forward attempt and poll rows, as its
// export gives them.
func queueRows(t *testing.T, e store.Exporter) []store.Record {
	t.Helper()
	var recs []store.Record
	if _, err := e.Export(context.Background(), func(r store.Record) error {
		if r.Job == nil && r.Delivery == nil {
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return recs
}

// queueView is what the API shows of a log's queue and timelines.
func queueView(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	view := map[string]any{}
	stats, err := st.ForwardStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	view["stats"] = stats
	page, _, err := st.ListForwards(ctx, store.ForwardFilter{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	view["queue"] = page
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		j, err := st.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		attempts, err := st.ForwardAttempts(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		polls, err := st.JobPolls(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		view[id] = []any{j.Forward, attempts, polls}
	}
	b, err := json.Marshal(view)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// copyLog imports from into to and checks the copy's counts against the
// source's.
func copyLog(t *testing.T, from store.Exporter, to store.Importer) store.LogCounts {
	t.Helper()
	var want store.LogCounts
	got, err := to.Import(context.Background(), func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		c, err := from.Export(ctx, fn)
		want = c
		return c, err
	})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if d := got.Diff(want); d != "" {
		t.Fatalf("the copy's counts differ from the source's: %s", d)
	}
	return got
}

// A queue copies between the backends either way, and from SQLite to
// SQLite, with every forward (its lease and token too), attempt and poll,
// the pause, and the forward:<state> counts, which SQLite keeps as counters
// and Postgres counts from rows: ForwardStats, the queue and the timelines
// read the same on every copy, and each copy claims on as the source would.
func TestCopyForwardsBetweenBackends(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	openSQLite := func(name string) *sqlite.Store {
		s, err := sqlite.Open(ctx, filepath.Join(dir, name), sqlite.Options{Now: fixedClock, Forward: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src := openSQLite("src.db")
	held := fillQueue(t, src)
	want := queueView(t, src)
	wantRows := queueRows(t, src)

	toPostgres := openTest(t, freshSchema(t), Options{Now: fixedClock, Forward: true})
	backToSQLite := openSQLite("back.db")
	toSQLite := openSQLite("copy.db")
	for _, c := range []struct {
		what     string
		from, to copyable
	}{
		{"SQLite to Postgres", src, toPostgres},
		{"Postgres to SQLite", toPostgres, backToSQLite},
		{"SQLite to SQLite", src, toSQLite},
	} {
		got := copyLog(t, c.from, c.to)
		if got.Forwards != 5 || got.ForwardAttempts != 4 || got.Polls != 5 || !got.Paused ||
			got.PauseReason != "app answered 410 Gone" || got.Counters["forward:pending"] != 2 ||
			got.Counters["forward:delivered"] != 1 || got.Counters["forward:failed"] != 1 ||
			got.Counters["forward:paused"] != 1 {
			t.Errorf("%s: counts %+v; want 5 forwards (2 pending, one in each other state), 4 attempts, 5 polls, the pause",
				c.what, got)
		}
		if rows := queueRows(t, c.to); !reflect.DeepEqual(rows, wantRows) {
			t.Errorf("%s: the forward, attempt and poll rows differ from the source's", c.what)
		}
		if view := queueView(t, c.to); view != want {
			t.Errorf("%s: the copy shows\n%s\nthe source\n%s", c.what, view, want)
		}
	}

	// On each log, source included, forwarding resumes; the paused forward
	// and the retry now due are claimed, lowest seq first, while e's lease
	// holds; e's claim, made on the source, is still the one its token
	// fences, and recording it leaves ForwardStats the same everywhere.
	var after []string
	for _, c := range []struct {
		what string
		st   store.Store
	}{{"the source", src}, {"SQLite to Postgres", toPostgres}, {"Postgres to SQLite", backToSQLite},
		{"SQLite to SQLite", toSQLite}} {
		if err := c.st.ResumeForwarding(ctx, t0); err != nil {
			t.Fatal(err)
		}
		claims, err := c.st.ClaimForwards(ctx, t0.Add(2*time.Minute), 5, time.Hour, false)
		if ids := claimedIDs(claims); err != nil || !slices.Equal(ids, []string{"c", "d"}) ||
			claims[0].Attempt != 2 || claims[1].Attempt != 2 {
			t.Errorf("%s: claimed %v (%+v), %v; want c and d, each on its second attempt", c.what, ids, claims, err)
		}
		if ok, err := c.st.FinishForward(ctx, held, store.ForwardResult{At: t0, Status: 200,
			State: store.ForwardDelivered}); err != nil || !ok {
			t.Errorf("%s: finishing e's claim: %v, %v; want it recorded", c.what, ok, err)
		}
		after = append(after, queueView(t, c.st))
	}
	for i, c := range []string{"SQLite to Postgres", "Postgres to SQLite", "SQLite to SQLite"} {
		if after[i+1] != after[0] {
			t.Errorf("%s, after the same writes: the copy shows\n%s\nthe source\n%s", c, after[i+1], after[0])
		}
	}
}
