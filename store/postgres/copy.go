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
	"counters":          "copied",
	"feed_counter":      "copied as LogCounts.LastSeq",
	"meta":              "not copied: readiness probes only",
	"schema_migrations": "not copied: the target's own, checked equal",
}

const (
	jobRowColumns = `id, job_id, status, terminal, total_projects, completed_projects, failed_projects,
		projects, source, progress, stage, webhook_deliveries, webhook_missed, poll_count, last_error,
		created_at, updated_at, terminal_at, seq, next_poll_at, poll_step, fail_count, not_found_count,
		poll_ended_at, missed_checked`
	deliveryRowColumns = `id, job_row, job_id, received_at, last_received_at, attempt, status, outcome,
		error, body, body_hash, copies`
)

var (
	jobRowNames      = strings.Fields(strings.ReplaceAll(jobRowColumns, ",", " "))
	deliveryRowNames = strings.Fields(strings.ReplaceAll(deliveryRowColumns, ",", " "))
)

func export(ctx context.Context, db beginner, fn func(store.Record) error) (store.LogCounts, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return store.LogCounts{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var sent store.LogCounts
	rows, err := tx.Query(ctx, `SELECT `+jobRowColumns+` FROM jobs ORDER BY id`)
	if err != nil {
		return store.LogCounts{}, err
	}
	for rows.Next() {
		var j store.JobRow
		var status string
		if err := rows.Scan(&j.ID, &j.JobID, &status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
			&j.FailedProjects, &j.Projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
			&j.WebhookMissed, &j.PollCount, &j.LastError, &j.CreatedAt, &j.UpdatedAt, &j.TerminalAt, &j.Seq,
			&j.NextPollAt, &j.PollStep, &j.FailCount, &j.NotFoundCount, &j.PollEndedAt, &j.MissedChecked); err != nil {
			rows.Close()
			return store.LogCounts{}, fmt.Errorf("read jobs: %w", err)
		}
		j.Status = store.Status(status)
		if err := fn(store.Record{Job: &j}); err != nil {
			rows.Close()
			return store.LogCounts{}, passErr{err}
		}
		sent.Jobs++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.LogCounts{}, fmt.Errorf("read jobs: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT `+deliveryRowColumns+` FROM deliveries ORDER BY id`)
	if err != nil {
		return store.LogCounts{}, err
	}
	for rows.Next() {
		var d store.DeliveryRow
		if err := rows.Scan(&d.ID, &d.JobRow, &d.JobID, &d.ReceivedAt, &d.LastReceivedAt, &d.Attempt, &d.Status,
			&d.Outcome, &d.Error, &d.Body, &d.BodyHash, &d.Copies); err != nil {
			rows.Close()
			return store.LogCounts{}, fmt.Errorf("read deliveries: %w", err)
		}
		if err := fn(store.Record{Delivery: &d}); err != nil {
			rows.Close()
			return store.LogCounts{}, passErr{err}
		}
		sent.Deliveries++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.LogCounts{}, fmt.Errorf("read deliveries: %w", err)
	}
	c, err := countLog(ctx, tx)
	if err != nil {
		return store.LogCounts{}, err
	}
	c.Jobs, c.Deliveries = sent.Jobs, sent.Deliveries
	return c, nil
}

// countLog counts the log's rows and reads its counters and last seq.
func countLog(ctx context.Context, q querier) (store.LogCounts, error) {
	var c store.LogCounts
	if err := q.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM deliveries),
		(SELECT seq FROM feed_counter)`).Scan(&c.Jobs, &c.Deliveries, &c.LastSeq); err != nil {
		return c, fmt.Errorf("count the log: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT name, n FROM counters WHERE n != 0`)
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

// copyBatch bounds the rows, and copyBytes the bodies, held before they are
// sent with COPY.
const (
	copyBatch = 1000
	copyBytes = 8 << 20
)

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
	if _, err := tx.Exec(ctx, `LOCK TABLE jobs, deliveries, counters, feed_counter IN EXCLUSIVE MODE`); err != nil {
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
	var jobs, deliveries [][]any
	size := 0
	flushJobs := func() error {
		if len(jobs) == 0 {
			return nil
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"jobs"}, jobRowNames, pgx.CopyFromRows(jobs))
		jobs = jobs[:0]
		if err != nil {
			return fmt.Errorf("write jobs: %w", err)
		}
		return nil
	}
	flushDeliveries := func() error {
		if len(deliveries) == 0 {
			return nil
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"deliveries"}, deliveryRowNames, pgx.CopyFromRows(deliveries))
		deliveries, size = deliveries[:0], 0
		if err != nil {
			return fmt.Errorf("write deliveries: %w", err)
		}
		return nil
	}
	counts, err := from(ctx, func(r store.Record) error {
		switch {
		case r.Job != nil:
			j := r.Job
			jobs = append(jobs, []any{j.ID, j.JobID, string(j.Status), j.Terminal, j.TotalProjects,
				j.CompletedProjects, j.FailedProjects, j.Projects, j.Source, j.Progress, j.Stage,
				j.WebhookDeliveries, j.WebhookMissed, j.PollCount, j.LastError, j.CreatedAt, j.UpdatedAt,
				j.TerminalAt, j.Seq, j.NextPollAt, j.PollStep, j.FailCount, j.NotFoundCount, j.PollEndedAt,
				j.MissedChecked})
			if len(jobs) >= copyBatch {
				return s.dbErr(flushJobs())
			}
		case r.Delivery != nil:
			// Deliveries refer to jobs, which all come first.
			if err := flushJobs(); err != nil {
				return s.dbErr(err)
			}
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
			deliveries = append(deliveries, []any{d.ID, d.JobRow, d.JobID, d.ReceivedAt, last, d.Attempt,
				d.Status, d.Outcome, d.Error, d.Body, d.BodyHash, d.Copies})
			size += len(d.Body)
			if len(deliveries) >= copyBatch || size >= copyBytes {
				return s.dbErr(flushDeliveries())
			}
		}
		return nil
	})
	if err != nil {
		var pass passErr
		if errors.As(err, &pass) {
			return err
		}
		// An error of the source, as it worded it.
		return passErr{err}
	}
	if err := errors.Join(flushJobs(), flushDeliveries()); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM counters`); err != nil {
		return err
	}
	for name, n := range counts.Counters {
		if n == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO counters (name, n) VALUES ($1, $2)`, name, n); err != nil {
			return fmt.Errorf("write counter %s: %w", name, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE feed_counter SET seq = $1`, counts.LastSeq); err != nil {
		return fmt.Errorf("write seq: %w", err)
	}
	for _, table := range []string{"jobs", "deliveries"} {
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
