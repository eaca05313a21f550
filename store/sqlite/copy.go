package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/nouvelhook/nouvelhook/store"
)

var (
	_ store.Exporter = (*Source)(nil)
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// Source is a SQLite log opened read-only to be exported. Like Backup, it
// takes neither the store's lock nor a write lock and runs no migrations, so
// it works while a serve holds the file: an export reads one snapshot, which
// WAL mode lets stand beside the writer.
type Source struct {
	path string
	db   *sql.DB
}

// OpenSource opens the log at path read-only. It refuses a path that does
// not exist, an empty file, a database that is not a nouvelhook log, and a
// log whose migrations are not exactly this version's (run serve on it once
// to bring an older one up to date).
func OpenSource(ctx context.Context, path string) (*Source, error) {
	exists, err := checkExisting(path, false)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("database %s does not exist", path)
	}
	if err := checkNotEmpty(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, openProblem(path, err)
	}
	src := &Source{path: path, db: db}
	if err := src.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return src, nil
}

// Close releases the source.
func (src *Source) Close() error { return src.db.Close() }

func (src *Source) check(ctx context.Context) error {
	conn, err := src.db.Conn(ctx)
	if err != nil {
		return openProblem(src.path, err)
	}
	defer conn.Close()
	tables, err := checkSchema(ctx, conn, src.path)
	if err != nil {
		return err
	}
	if !tables {
		return fmt.Errorf("database %s is not a nouvelhook log (it has no tables)", src.path)
	}
	return checkMigrations(ctx, conn, src.path)
}

// checkMigrations refuses a log whose applied migrations are not this
// version's, since its columns would not be those exported.
func checkMigrations(ctx context.Context, q querier, path string) error {
	want, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return openProblem(path, err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return openProblem(path, err)
		}
		got = append(got, name)
	}
	if err := rows.Err(); err != nil {
		return openProblem(path, err)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("database %s was written by another version of nouvelhook (migrations %s, this version has %s); run this version's serve on it once, then copy",
			path, strings.Join(got, ","), strings.Join(want, ","))
	}
	return nil
}

// Export reads the whole log in one read transaction (see store.Exporter).
func (src *Source) Export(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
	c, err := export(ctx, src.db, fn)
	if err != nil {
		return store.LogCounts{}, fmt.Errorf("read %s: %w", src.path, err)
	}
	return c, nil
}

// Export reads the whole log in one read transaction on the store's read
// pool (see store.Exporter).
func (s *Store) Export(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
	return export(ctx, s.rdb, fn)
}

// copyTables is every table of a log, and what a copy does with it; a test
// holds it to the schema, so that a table a migration adds (forwards, say)
// cannot be left out of copies unnoticed.
var copyTables = map[string]string{
	"jobs":              "copied, every column",
	"deliveries":        "copied, every column",
	"counters":          "copied, seq as LogCounts.LastSeq",
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

// export reads every job, then every delivery, then the counters, in one
// read transaction, so that all of it is one snapshot.
func export(ctx context.Context, db *sql.DB, fn func(store.Record) error) (store.LogCounts, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return store.LogCounts{}, err
	}
	defer tx.Rollback()
	var sent store.LogCounts
	rows, err := tx.QueryContext(ctx, `SELECT `+jobRowColumns+` FROM jobs ORDER BY id`)
	if err != nil {
		return store.LogCounts{}, err
	}
	for rows.Next() {
		var j store.JobRow
		var ended, seq, next, pollEnded sql.NullInt64
		if err := rows.Scan(&j.ID, &j.JobID, &j.Status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
			&j.FailedProjects, &j.Projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
			&j.WebhookMissed, &j.PollCount, &j.LastError, &j.CreatedAt, &j.UpdatedAt, &ended, &seq, &next,
			&j.PollStep, &j.FailCount, &j.NotFoundCount, &pollEnded, &j.MissedChecked); err != nil {
			rows.Close()
			return store.LogCounts{}, fmt.Errorf("read jobs: %w", err)
		}
		j.TerminalAt, j.Seq, j.NextPollAt, j.PollEndedAt = ptr(ended), ptr(seq), ptr(next), ptr(pollEnded)
		if err := fn(store.Record{Job: &j}); err != nil {
			rows.Close()
			return store.LogCounts{}, err
		}
		sent.Jobs++
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return store.LogCounts{}, fmt.Errorf("read jobs: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT `+deliveryRowColumns+` FROM deliveries ORDER BY id`)
	if err != nil {
		return store.LogCounts{}, err
	}
	for rows.Next() {
		var d store.DeliveryRow
		var jobRow, last sql.NullInt64
		var jobID sql.NullString
		if err := rows.Scan(&d.ID, &jobRow, &jobID, &d.ReceivedAt, &last, &d.Attempt, &d.Status, &d.Outcome,
			&d.Error, &d.Body, &d.BodyHash, &d.Copies); err != nil {
			rows.Close()
			return store.LogCounts{}, fmt.Errorf("read deliveries: %w", err)
		}
		d.JobRow, d.LastReceivedAt = ptr(jobRow), ptr(last)
		if jobID.Valid {
			d.JobID = &jobID.String
		}
		if err := fn(store.Record{Delivery: &d}); err != nil {
			rows.Close()
			return store.LogCounts{}, err
		}
		sent.Deliveries++
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return store.LogCounts{}, fmt.Errorf("read deliveries: %w", err)
	}
	c, err := countLog(ctx, tx)
	if err != nil {
		return store.LogCounts{}, err
	}
	c.Jobs, c.Deliveries = sent.Jobs, sent.Deliveries
	return c, nil
}

func ptr(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	v := n.Int64
	return &v
}

type txQuerier interface {
	querier
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// countLog counts the log's rows and reads its counters and last seq.
func countLog(ctx context.Context, q txQuerier) (store.LogCounts, error) {
	var c store.LogCounts
	if err := q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM deliveries),
		MAX(COALESCE((SELECT n FROM counters WHERE name = 'seq'), 0), COALESCE((SELECT MAX(seq) FROM jobs), 0))`).
		Scan(&c.Jobs, &c.Deliveries, &c.LastSeq); err != nil {
		return c, fmt.Errorf("count the log: %w", err)
	}
	// The forward counters are this backend's own index of the forwards
	// table, rebuilt from its rows by Import, not counts a copy checks.
	rows, err := q.QueryContext(ctx, `SELECT name, n FROM counters
		WHERE name != 'seq' AND name NOT LIKE 'forward:%' AND n != 0`)
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

// Import fills an empty log (see store.Importer). It writes on the writer's
// connection in one IMMEDIATE transaction, beside the group-commit writer
// rather than through it, because from must run once only; it is meant for
// a store just opened for the copy, with nothing else writing to it, and
// closed afterwards.
func (s *Store) Import(ctx context.Context, from store.ExportFunc) (store.LogCounts, error) {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return store.LogCounts{}, store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	if err := s.importTx(ctx, from); err != nil {
		return store.LogCounts{}, err
	}
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return store.LogCounts{}, err
	}
	defer tx.Rollback()
	return countLog(ctx, tx)
}

func (s *Store) importTx(ctx context.Context, from store.ExportFunc) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	have, err := countLog(ctx, tx)
	if err != nil {
		return err
	}
	if !have.Empty() {
		return store.NotEmpty(have)
	}
	insJob, err := tx.PrepareContext(ctx, `INSERT INTO jobs (`+jobRowColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer insJob.Close()
	insDelivery, err := tx.PrepareContext(ctx, `INSERT INTO deliveries (`+deliveryRowColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer insDelivery.Close()
	counts, err := from(ctx, func(r store.Record) error {
		switch {
		case r.Job != nil:
			j := r.Job
			if _, err := insJob.ExecContext(ctx, j.ID, j.JobID, string(j.Status), j.Terminal, j.TotalProjects,
				j.CompletedProjects, j.FailedProjects, j.Projects, j.Source, j.Progress, j.Stage,
				j.WebhookDeliveries, j.WebhookMissed, j.PollCount, j.LastError, j.CreatedAt, j.UpdatedAt,
				j.TerminalAt, j.Seq, j.NextPollAt, j.PollStep, j.FailCount, j.NotFoundCount, j.PollEndedAt,
				j.MissedChecked); err != nil {
				return fmt.Errorf("write job %s: %w", j.JobID, err)
			}
		case r.Delivery != nil:
			d := r.Delivery
			if _, err := insDelivery.ExecContext(ctx, d.ID, d.JobRow, d.JobID, d.ReceivedAt, d.LastReceivedAt,
				d.Attempt, d.Status, d.Outcome, d.Error, d.Body, d.BodyHash, d.Copies); err != nil {
				return fmt.Errorf("write delivery %d: %w", d.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM counters`); err != nil {
		return err
	}
	for name, n := range counts.Counters {
		if name == seqCounter || n == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n) VALUES (?, ?)`, name, n); err != nil {
			return fmt.Errorf("write counter %s: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n) VALUES ('seq', ?)`, counts.LastSeq); err != nil {
		return fmt.Errorf("write seq: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n)
		SELECT 'forward:' || state, COUNT(*) FROM forwards GROUP BY state`); err != nil {
		return fmt.Errorf("count forwards: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
