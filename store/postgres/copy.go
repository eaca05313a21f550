package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
)

var (
	_ store.Exporter = (*Source)(nil)
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// Source is a Postgres log opened only to be exported: one connection, no
// migrations, no listener, and reads in a read-only transaction, so it works
// while replicas serve the log.
type Source struct {
	conn   *pgx.Conn
	url    string // redacted
	secret string
}

// OpenSource connects to the log at dbURL. It refuses a database whose
// schema holds no nouvelhook log, and a log whose migrations are not exactly
// this version's. Errors name the URL with its password masked.
func OpenSource(ctx context.Context, dbURL string) (*Source, error) {
	shown := Redact(dbURL)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "postgres URL %s: %s", shown,
			scrub(err.Error(), urlPassword(dbURL)))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	src := &Source{url: shown, secret: cfg.Password}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, src.err(err)
	}
	src.conn = conn
	if err := src.check(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return src, nil
}

// Close releases the source's connection.
func (src *Source) Close() error { return src.conn.Close(context.Background()) }

func (src *Source) err(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// pgx's errors may hold tabs and one line per address tried.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	return fmt.Errorf("postgres %s: %s", src.url, scrub(msg, src.secret))
}

func (src *Source) check(ctx context.Context) error {
	var ok bool
	if err := src.conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL
		AND to_regclass('jobs') IS NOT NULL`).Scan(&ok); err != nil {
		return src.err(err)
	}
	if !ok {
		return fmt.Errorf("postgres %s holds no nouvelhook log (no jobs or schema_migrations table in its schema)", src.url)
	}
	rows, err := src.conn.Query(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return src.err(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return src.err(err)
	}
	want, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("postgres %s was written by another version of nouvelhook (migrations %s, this version has %s); run this version's serve on it once, then copy",
			src.url, strings.Join(got, ","), strings.Join(want, ","))
	}
	return nil
}

// Export reads the whole log in one read-only REPEATABLE READ transaction,
// one snapshot (see store.Exporter).
func (src *Source) Export(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
	c, err := export(ctx, src.conn, fn)
	if err != nil {
		var pass passErr
		if errors.As(err, &pass) {
			return c, pass.err
		}
		return c, src.err(err)
	}
	return c, nil
}

// Export reads the whole log in one read-only REPEATABLE READ transaction
// (see store.Exporter).
func (s *Store) Export(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
	c, err := export(ctx, s.pool, fn)
	if err != nil {
		var pass passErr
		if errors.As(err, &pass) {
			return c, pass.err
		}
		return c, s.dbErr(err)
	}
	return c, nil
}

// passErr carries an error of the caller's fn through export untouched.
type passErr struct{ err error }

func (p passErr) Error() string { return p.err.Error() }

type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// copyTables is every table of a log, and what a copy does with it; a test
// holds it to the schema, so that a table a migration adds (forwards, say)
// cannot be left out of copies unnoticed.
var copyTables = map[string]string{
	"jobs":              "copied, every column",
	"deliveries":        "copied, every column",
	"forwards":          "copied, every column, leases and tokens included",
	"forward_attempts":  "copied, every column",
	"polls":             "copied, every column",
	"forward_pause":     "copied as LogCounts.Paused and PauseReason",
	"counters":          "copied, but for forward:<state>, counted here from the forwards rows",
	"feed_counter":      "copied as LogCounts.LastSeq",
	"feed":              "copied as each job's seq",
	"meta":              "not copied: readiness probes and the poller's state, which describe the running service, not the log",
	"schema_migrations": "not copied: the target's own, checked equal",
}

// The columns of each copied table, in the order of the fields of its row
// type in package store.
const (
	jobRowColumns = `id, job_id, status, terminal, total_projects, completed_projects, failed_projects,
		projects, source, progress, stage, webhook_deliveries, webhook_missed, poll_count, last_error,
		created_at, updated_at, terminal_at, seq, next_poll_at, poll_step, fail_count, not_found_count,
		poll_ended_at, missed_checked`
	deliveryRowColumns = `id, job_row, job_id, received_at, last_received_at, attempt, status, outcome,
		error, body, body_hash, copies`
	forwardRowColumns = `job_row, seq, state, attempts, last_status, last_error, next_attempt_at,
		delivered_at, enqueued_at, lease_until, claims`
	forwardAttemptRowColumns = `id, job_row, attempt, at, took_ms, status, error, state`
	pollRowColumns           = `id, job_row, at, status, error, ended`
)

// unnumbered is, for each end the sequencer has not numbered yet in the
// snapshot, the job's row (id) and the seq the sequencer would give it:
// those after feed_counter's, oldest terminal_at (then row) first. Export
// shows these seqs, on the job and on its forward, and countLog's LastSeq
// counts them, so a copy is numbered as the sequencer would number it.
const unnumbered = `(SELECT jobs.id, fc.base + row_number() OVER (ORDER BY jobs.terminal_at, jobs.id) AS seq
	FROM feed JOIN jobs ON jobs.id = feed.job_row, (SELECT seq AS base FROM feed_counter) AS fc
	WHERE feed.seq IS NULL) AS u`

// exportJobs and exportForwards read every job and forward in row order,
// a job's seq from its feed row or unnumbered.
var (
	exportJobs = `SELECT ` + strings.Replace(jobRowColumns, " seq,", " COALESCE(feed.seq, u.seq),", 1) +
		` FROM jobs LEFT JOIN feed ON feed.job_row = jobs.id LEFT JOIN ` + unnumbered + ` USING (id) ORDER BY id`
	exportForwards = `SELECT ` + strings.Replace(forwardRowColumns, " seq,", " COALESCE(forwards.seq, u.seq),", 1) +
		` FROM forwards LEFT JOIN ` + unnumbered + ` ON u.id = forwards.job_row ORDER BY job_row`
)

var (
	// jobRowNames are the columns of jobs: a job's seq is in feed.
	jobRowNames            = slices.DeleteFunc(columnNames(jobRowColumns), func(c string) bool { return c == "seq" })
	deliveryRowNames       = columnNames(deliveryRowColumns)
	forwardRowNames        = columnNames(forwardRowColumns)
	forwardAttemptRowNames = columnNames(forwardAttemptRowColumns)
	pollRowNames           = columnNames(pollRowColumns)
)

func columnNames(columns string) []string {
	return strings.Fields(strings.ReplaceAll(columns, ",", " "))
}

func export(ctx context.Context, db beginner, fn func(store.Record) error) (store.LogCounts, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return store.LogCounts{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var sent store.LogCounts
	if sent.Jobs, err = exportTable(ctx, tx, "jobs", exportJobs, func(row pgx.CollectableRow) (store.Record, error) {
		var j store.JobRow
		var status string
		if err := row.Scan(&j.ID, &j.JobID, &status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
			&j.FailedProjects, &j.Projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
			&j.WebhookMissed, &j.PollCount, &j.LastError, &j.CreatedAt, &j.UpdatedAt, &j.TerminalAt, &j.Seq,
			&j.NextPollAt, &j.PollStep, &j.FailCount, &j.NotFoundCount, &j.PollEndedAt, &j.MissedChecked); err != nil {
			return store.Record{}, err
		}
		j.Status = store.Status(status)
		return store.Record{Job: &j}, nil
	}, fn); err != nil {
		return store.LogCounts{}, err
	}
	if sent.Deliveries, err = exportTable(ctx, tx, "deliveries", exportQuery(deliveryRowColumns, "deliveries", "id"), func(row pgx.CollectableRow) (store.Record, error) {
		var d store.DeliveryRow
		if err := row.Scan(&d.ID, &d.JobRow, &d.JobID, &d.ReceivedAt, &d.LastReceivedAt, &d.Attempt, &d.Status,
			&d.Outcome, &d.Error, &d.Body, &d.BodyHash, &d.Copies); err != nil {
			return store.Record{}, err
		}
		return store.Record{Delivery: &d}, nil
	}, fn); err != nil {
		return store.LogCounts{}, err
	}
	if sent.Forwards, err = exportTable(ctx, tx, "forwards", exportForwards, func(row pgx.CollectableRow) (store.Record, error) {
		var f store.ForwardRow
		var state string
		if err := row.Scan(&f.JobRow, &f.Seq, &state, &f.Attempts, &f.LastStatus, &f.LastError, &f.NextAttemptAt,
			&f.DeliveredAt, &f.EnqueuedAt, &f.LeaseUntil, &f.Claims); err != nil {
			return store.Record{}, err
		}
		f.State = store.ForwardState(state)
		return store.Record{Forward: &f}, nil
	}, fn); err != nil {
		return store.LogCounts{}, err
	}
	if sent.ForwardAttempts, err = exportTable(ctx, tx, "forward_attempts", exportQuery(forwardAttemptRowColumns, "forward_attempts", "id"), func(row pgx.CollectableRow) (store.Record, error) {
		var a store.ForwardAttemptRow
		var state string
		if err := row.Scan(&a.ID, &a.JobRow, &a.Attempt, &a.At, &a.TookMs, &a.Status, &a.Error, &state); err != nil {
			return store.Record{}, err
		}
		a.State = store.ForwardState(state)
		return store.Record{ForwardAttempt: &a}, nil
	}, fn); err != nil {
		return store.LogCounts{}, err
	}
	if sent.Polls, err = exportTable(ctx, tx, "polls", exportQuery(pollRowColumns, "polls", "id"), func(row pgx.CollectableRow) (store.Record, error) {
		var p store.PollRow
		if err := row.Scan(&p.ID, &p.JobRow, &p.At, &p.Status, &p.Error, &p.Ended); err != nil {
			return store.Record{}, err
		}
		return store.Record{Poll: &p}, nil
	}, fn); err != nil {
		return store.LogCounts{}, err
	}
	c, err := countLog(ctx, tx)
	if err != nil {
		return store.LogCounts{}, err
	}
	c.Jobs, c.Deliveries, c.Forwards, c.ForwardAttempts, c.Polls = sent.Jobs, sent.Deliveries, sent.Forwards,
		sent.ForwardAttempts, sent.Polls
	return c, nil
}

// exportQuery reads columns of table, ordered by order.
func exportQuery(columns, table, order string) string {
	return `SELECT ` + columns + ` FROM ` + table + ` ORDER BY ` + order
}

// exportTable reads each row of table, with query, scans it with scan,
// passes it to fn, and counts them. An error of fn is passed on untouched,
// as a passErr.
func exportTable(ctx context.Context, tx pgx.Tx, table, query string,
	scan func(pgx.CollectableRow) (store.Record, error), fn func(store.Record) error) (int64, error) {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return n, fmt.Errorf("read %s: %w", table, err)
		}
		if err := fn(r); err != nil {
			return n, passErr{err}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read %s: %w", table, err)
	}
	return n, nil
}

// countLog counts the log's rows and reads its counters and last seq,
// counting the ends not numbered yet as export numbers them.
func countLog(ctx context.Context, q querier) (store.LogCounts, error) {
	var c store.LogCounts
	var reason *string
	if err := q.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM deliveries),
		(SELECT COUNT(*) FROM forwards), (SELECT COUNT(*) FROM forward_attempts), (SELECT COUNT(*) FROM polls),
		(SELECT seq FROM feed_counter) + (SELECT COUNT(*) FROM feed WHERE seq IS NULL),
		(SELECT reason FROM forward_pause)`).
		Scan(&c.Jobs, &c.Deliveries, &c.Forwards, &c.ForwardAttempts, &c.Polls, &c.LastSeq, &reason); err != nil {
		return c, fmt.Errorf("count the log: %w", err)
	}
	if reason != nil {
		c.Paused, c.PauseReason = true, *reason
	}
	// forward:<state> is counted from the forwards' rows (see
	// store.LogCounts); this backend keeps no such counters, and Import
	// writes none. The others are summed over their shards.
	rows, err := q.Query(ctx, `SELECT name, sum(n)::bigint FROM counters WHERE name NOT LIKE 'forward:%'
		GROUP BY name HAVING sum(n) != 0
		UNION ALL SELECT 'forward:' || state, count(*) FROM forwards GROUP BY state`)
	if err != nil {
		return c, fmt.Errorf("read counters: %w", err)
	}
	defer rows.Close()
	c.Counters = map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return c, fmt.Errorf("read counters: %w", err)
		}
		c.Counters[name] = n
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("read counters: %w", err)
	}
	return c, nil
}

// copyBatch bounds the rows, and copyBytes their bodies and texts, a
// tableBatch holds before it sends them with COPY.
const (
	copyBatch = 1000
	copyBytes = 8 << 20
)

// tableBatch is the rows of one table an import holds before it sends them.
type tableBatch struct {
	table   string
	columns []string
	rows    [][]any
	size    int
}

// add holds row, of size bytes of bodies and texts, and sends the batch
// once it is full.
func (b *tableBatch) add(ctx context.Context, tx pgx.Tx, size int, row ...any) error {
	b.rows, b.size = append(b.rows, row), b.size+size
	if len(b.rows) >= copyBatch || b.size >= copyBytes {
		return b.flush(ctx, tx)
	}
	return nil
}

// flush sends the rows held.
func (b *tableBatch) flush(ctx context.Context, tx pgx.Tx) error {
	if len(b.rows) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{b.table}, b.columns, pgx.CopyFromRows(b.rows))
	b.rows, b.size = b.rows[:0], 0
	if err != nil {
		return fmt.Errorf("write %s: %w", b.table, err)
	}
	return nil
}

// Import fills an empty log (see store.Importer) in one transaction that
// locks the log's tables against writers first, so that the emptiness it
// checks holds until the commit; replicas serving the log wait for it. Rows
// go in with COPY, in batches, keeping their ids; the identity sequences are
// then moved past them so that later rows follow on.
func (s *Store) Import(ctx context.Context, from store.ExportFunc) (store.LogCounts, error) {
	if s.closed.Load() {
		return store.LogCounts{}, store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	if err := s.importTx(ctx, from); err != nil {
		var pass passErr
		if errors.As(err, &pass) {
			return store.LogCounts{}, pass.err
		}
		return store.LogCounts{}, s.dbErr(err)
	}
	c, err := countLog(ctx, s.pool)
	return c, s.dbErr(err)
}

func (s *Store) importTx(ctx context.Context, from store.ExportFunc) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `LOCK TABLE jobs, deliveries, forwards, forward_attempts, polls, forward_pause,
		counters, feed_counter, feed IN EXCLUSIVE MODE`); err != nil {
		return err
	}
	have, err := countLog(ctx, tx)
	if err != nil {
		return err
	}
	if !have.Empty() {
		return passErr{store.NotEmpty(have)}
	}
	// A SQLite log may hold deliveries stored before it hashed bodies; this
	// schema can take them only if body_hash may be NULL.
	var hashNullable bool
	if err := tx.QueryRow(ctx, `SELECT is_nullable = 'YES' FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'deliveries' AND column_name = 'body_hash'`).
		Scan(&hashNullable); err != nil {
		return err
	}
	jobs := &tableBatch{table: "jobs", columns: jobRowNames}
	// Every other table refers to jobs, which all come first.
	others := []*tableBatch{
		{table: "feed", columns: []string{"job_row", "seq"}},
		{table: "deliveries", columns: deliveryRowNames},
		{table: "forwards", columns: forwardRowNames},
		{table: "forward_attempts", columns: forwardAttemptRowNames},
		{table: "polls", columns: pollRowNames},
	}
	feed, deliveries, forwards, attempts, polls := others[0], others[1], others[2], others[3], others[4]
	counts, err := from(ctx, func(r store.Record) error {
		if r.Job == nil {
			if err := errors.Join(jobs.flush(ctx, tx), feed.flush(ctx, tx)); err != nil {
				return s.dbErr(err)
			}
		}
		var err error
		switch {
		case r.Job != nil:
			j := r.Job
			err = jobs.add(ctx, tx, 0, j.ID, j.JobID, string(j.Status), j.Terminal, j.TotalProjects,
				j.CompletedProjects, j.FailedProjects, j.Projects, j.Source, j.Progress, j.Stage,
				j.WebhookDeliveries, j.WebhookMissed, j.PollCount, j.LastError, j.CreatedAt, j.UpdatedAt,
				j.TerminalAt, j.NextPollAt, j.PollStep, j.FailCount, j.NotFoundCount, j.PollEndedAt,
				j.MissedChecked)
			if err == nil && j.Seq != nil {
				// Feed rows refer to jobs: they are sent once the jobs
				// held are.
				feed.rows = append(feed.rows, []any{j.ID, j.Seq})
			}
			if err == nil && len(jobs.rows) == 0 {
				err = feed.flush(ctx, tx)
			}
		case r.Delivery != nil:
			d := r.Delivery
			if d.BodyHash == nil && !hashNullable {
				return passErr{store.Errorf(store.EINVALID,
					"delivery %d was stored before nouvelhook hashed delivery bodies, and this version's Postgres schema needs a hash; it cannot be copied to Postgres as it is", d.ID)}
			}
			last := d.LastReceivedAt
			if last == nil {
				// Both backends read a missing one as received_at.
				last = &d.ReceivedAt
			}
			err = deliveries.add(ctx, tx, len(d.Body), d.ID, d.JobRow, d.JobID, d.ReceivedAt, last, d.Attempt,
				d.Status, d.Outcome, d.Error, d.Body, d.BodyHash, d.Copies)
		case r.Forward != nil:
			f := r.Forward
			err = forwards.add(ctx, tx, 0, f.JobRow, f.Seq, string(f.State), f.Attempts, f.LastStatus, f.LastError,
				f.NextAttemptAt, f.DeliveredAt, f.EnqueuedAt, f.LeaseUntil, f.Claims)
		case r.ForwardAttempt != nil:
			a := r.ForwardAttempt
			err = attempts.add(ctx, tx, len(a.Error), a.ID, a.JobRow, a.Attempt, a.At, a.TookMs, a.Status, a.Error,
				string(a.State))
		case r.Poll != nil:
			p := r.Poll
			err = polls.add(ctx, tx, len(p.Error), p.ID, p.JobRow, p.At, p.Status, p.Error, p.Ended)
		}
		return s.dbErr(err)
	})
	if err != nil {
		var pass passErr
		if errors.As(err, &pass) {
			return err
		}
		// An error of the source, as it worded it.
		return passErr{err}
	}
	for _, b := range append([]*tableBatch{jobs}, others...) {
		if err := b.flush(ctx, tx); err != nil {
			return err
		}
	}
	var reason *string
	if counts.Paused {
		reason = &counts.PauseReason
	}
	if _, err := tx.Exec(ctx, `UPDATE forward_pause SET reason = $1`, reason); err != nil {
		return fmt.Errorf("write the forwarding pause: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM counters`); err != nil {
		return err
	}
	for name, n := range counts.Counters {
		if n == 0 || strings.HasPrefix(name, store.ForwardCounterPrefix) {
			continue // forwards are counted from their rows
		}
		if _, err := tx.Exec(ctx, `INSERT INTO counters (name, n) VALUES ($1, $2)`, name, n); err != nil {
			return fmt.Errorf("write counter %s: %w", name, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE feed_counter SET seq = $1`, counts.LastSeq); err != nil {
		return fmt.Errorf("write seq: %w", err)
	}
	for _, table := range []string{"jobs", "deliveries", "forward_attempts", "polls"} {
		if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('`+table+`', 'id'),
			COALESCE((SELECT MAX(id) FROM `+table+`), 1), (SELECT MAX(id) FROM `+table+`) IS NOT NULL)`); err != nil {
			return fmt.Errorf("move the %s id sequence: %w", table, err)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, feedChannel, strconv.FormatInt(counts.LastSeq, 10)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
