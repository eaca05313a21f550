package sqlite

import (
	"context"
	"database/sql"
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
	"forwards":          "copied, every column",
	"forward_attempts":  "copied, every column",
	"polls":             "copied, every column",
	"counters":          "copied, seq as LogCounts.LastSeq; forward:<state> rebuilt from the forwards copied",
	"meta":              "forward_pause copied as LogCounts.Paused and PauseReason; the rest is readiness probes, not copied",
	"schema_migrations": "not copied: the target's own, checked equal",
}

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

// export reads every job, then every delivery, forward, forward attempt
// and poll, then the counts, in one read transaction, so that all of it is
// one snapshot.
func export(ctx context.Context, db *sql.DB, fn func(store.Record) error) (store.LogCounts, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return store.LogCounts{}, err
	}
	defer tx.Rollback()
	var sent store.LogCounts
	for _, table := range []struct {
		what, query string
		scan        func(*sql.Rows) (store.Record, error)
		n           *int64
	}{
		{"jobs", `SELECT ` + jobRowColumns + ` FROM jobs ORDER BY id`, scanJobRow, &sent.Jobs},
		{"deliveries", `SELECT ` + deliveryRowColumns + ` FROM deliveries ORDER BY id`, scanDeliveryRow, &sent.Deliveries},
		{"forwards", `SELECT ` + forwardRowColumns + ` FROM forwards ORDER BY job_row`, scanForwardRow, &sent.Forwards},
		{"forward attempts", `SELECT ` + forwardAttemptRowColumns + ` FROM forward_attempts ORDER BY id`,
			scanForwardAttemptRow, &sent.ForwardAttempts},
		{"polls", `SELECT ` + pollRowColumns + ` FROM polls ORDER BY id`, scanPollRow, &sent.Polls},
	} {
		if *table.n, err = exportRows(ctx, tx, table.what, table.query, table.scan, fn); err != nil {
			return store.LogCounts{}, err
		}
	}
	c, err := countLog(ctx, tx)
	if err != nil {
		return store.LogCounts{}, err
	}
	c.Jobs, c.Deliveries, c.Forwards, c.ForwardAttempts, c.Polls =
		sent.Jobs, sent.Deliveries, sent.Forwards, sent.ForwardAttempts, sent.Polls
	return c, nil
}

// exportRows passes fn the record scan makes of each row query selects,
// and returns how many it passed. An error of fn is returned as it is.
func exportRows(ctx context.Context, tx *sql.Tx, what, query string, scan func(*sql.Rows) (store.Record, error),
	fn func(store.Record) error) (int64, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", what, err)
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return n, fmt.Errorf("read %s: %w", what, err)
		}
		if err := fn(r); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read %s: %w", what, err)
	}
	return n, nil
}

func scanJobRow(rows *sql.Rows) (store.Record, error) {
	var j store.JobRow
	var ended, seq, next, pollEnded sql.NullInt64
	err := rows.Scan(&j.ID, &j.JobID, &j.Status, &j.Terminal, &j.TotalProjects, &j.CompletedProjects,
		&j.FailedProjects, &j.Projects, &j.Source, &j.Progress, &j.Stage, &j.WebhookDeliveries,
		&j.WebhookMissed, &j.PollCount, &j.LastError, &j.CreatedAt, &j.UpdatedAt, &ended, &seq, &next,
		&j.PollStep, &j.FailCount, &j.NotFoundCount, &pollEnded, &j.MissedChecked)
	j.TerminalAt, j.Seq, j.NextPollAt, j.PollEndedAt = ptr(ended), ptr(seq), ptr(next), ptr(pollEnded)
	return store.Record{Job: &j}, err
}

func scanDeliveryRow(rows *sql.Rows) (store.Record, error) {
	var d store.DeliveryRow
	var jobRow, last sql.NullInt64
	var jobID sql.NullString
	err := rows.Scan(&d.ID, &jobRow, &jobID, &d.ReceivedAt, &last, &d.Attempt, &d.Status, &d.Outcome,
		&d.Error, &d.Body, &d.BodyHash, &d.Copies)
	d.JobRow, d.LastReceivedAt = ptr(jobRow), ptr(last)
	if jobID.Valid {
		d.JobID = &jobID.String
	}
	return store.Record{Delivery: &d}, err
}

func scanForwardRow(rows *sql.Rows) (store.Record, error) {
	var f store.ForwardRow
	var next, delivered, lease sql.NullInt64
	err := rows.Scan(&f.JobRow, &f.Seq, &f.State, &f.Attempts, &f.LastStatus, &f.LastError, &next, &delivered,
		&f.EnqueuedAt, &lease, &f.Claims)
	f.NextAttemptAt, f.DeliveredAt, f.LeaseUntil = ptr(next), ptr(delivered), ptr(lease)
	return store.Record{Forward: &f}, err
}

func scanForwardAttemptRow(rows *sql.Rows) (store.Record, error) {
	var a store.ForwardAttemptRow
	err := rows.Scan(&a.ID, &a.JobRow, &a.Attempt, &a.At, &a.TookMs, &a.Status, &a.Error, &a.State)
	return store.Record{ForwardAttempt: &a}, err
}

func scanPollRow(rows *sql.Rows) (store.Record, error) {
	var p store.PollRow
	err := rows.Scan(&p.ID, &p.JobRow, &p.At, &p.Status, &p.Error, &p.Ended)
	return store.Record{Poll: &p}, err
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

// countLog counts the log's rows and reads its counters, last seq and
// forwarding pause.
func countLog(ctx context.Context, q txQuerier) (store.LogCounts, error) {
	var c store.LogCounts
	var pause sql.NullString
	if err := q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM deliveries),
		(SELECT COUNT(*) FROM forwards), (SELECT COUNT(*) FROM forward_attempts), (SELECT COUNT(*) FROM polls),
		MAX(COALESCE((SELECT n FROM counters WHERE name = 'seq'), 0), COALESCE((SELECT MAX(seq) FROM jobs), 0)),
		(SELECT value FROM meta WHERE key = ?)`, pauseKey).
		Scan(&c.Jobs, &c.Deliveries, &c.Forwards, &c.ForwardAttempts, &c.Polls, &c.LastSeq, &pause); err != nil {
		return c, fmt.Errorf("count the log: %w", err)
	}
	if pause.Valid {
		c.Paused, c.PauseReason = true, pause.String
	}
	// The forward:<state> counters are this backend's index of the
	// forwards table, which Import rebuilds from the rows it writes; the
	// counts given are those of the rows, as Postgres gives them (see
	// store.LogCounts).
	rows, err := q.QueryContext(ctx, `SELECT name, n FROM counters
		WHERE name != 'seq' AND name NOT LIKE 'forward:%' AND n != 0
		UNION ALL SELECT 'forward:' || state, COUNT(*) FROM forwards GROUP BY state`)
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
	var ins [5]*sql.Stmt // jobs, deliveries, forwards, forward_attempts, polls
	for i, t := range []struct{ table, columns string }{{"jobs", jobRowColumns}, {"deliveries", deliveryRowColumns},
		{"forwards", forwardRowColumns}, {"forward_attempts", forwardAttemptRowColumns}, {"polls", pollRowColumns}} {
		marks := strings.Repeat("?, ", strings.Count(t.columns, ",")) + "?"
		if ins[i], err = tx.PrepareContext(ctx, `INSERT INTO `+t.table+` (`+t.columns+`) VALUES (`+marks+`)`); err != nil {
			return err
		}
		defer ins[i].Close()
	}
	counts, err := from(ctx, func(r store.Record) error {
		switch {
		case r.Job != nil:
			j := r.Job
			if _, err := ins[0].ExecContext(ctx, j.ID, j.JobID, string(j.Status), j.Terminal, j.TotalProjects,
				j.CompletedProjects, j.FailedProjects, j.Projects, j.Source, j.Progress, j.Stage,
				j.WebhookDeliveries, j.WebhookMissed, j.PollCount, j.LastError, j.CreatedAt, j.UpdatedAt,
				j.TerminalAt, j.Seq, j.NextPollAt, j.PollStep, j.FailCount, j.NotFoundCount, j.PollEndedAt,
				j.MissedChecked); err != nil {
				return fmt.Errorf("write job %s: %w", j.JobID, err)
			}
		case r.Delivery != nil:
			d := r.Delivery
			if _, err := ins[1].ExecContext(ctx, d.ID, d.JobRow, d.JobID, d.ReceivedAt, d.LastReceivedAt,
				d.Attempt, d.Status, d.Outcome, d.Error, d.Body, d.BodyHash, d.Copies); err != nil {
				return fmt.Errorf("write delivery %d: %w", d.ID, err)
			}
		case r.Forward != nil:
			f := r.Forward
			if _, err := ins[2].ExecContext(ctx, f.JobRow, f.Seq, string(f.State), f.Attempts, f.LastStatus, f.LastError,
				f.NextAttemptAt, f.DeliveredAt, f.EnqueuedAt, f.LeaseUntil, f.Claims); err != nil {
				return fmt.Errorf("write the forward of job row %d: %w", f.JobRow, err)
			}
		case r.ForwardAttempt != nil:
			a := r.ForwardAttempt
			if _, err := ins[3].ExecContext(ctx, a.ID, a.JobRow, a.Attempt, a.At, a.TookMs, a.Status, a.Error,
				string(a.State)); err != nil {
				return fmt.Errorf("write forward attempt %d: %w", a.ID, err)
			}
		case r.Poll != nil:
			p := r.Poll
			if _, err := ins[4].ExecContext(ctx, p.ID, p.JobRow, p.At, p.Status, p.Error, p.Ended); err != nil {
				return fmt.Errorf("write poll %d: %w", p.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if counts.Paused {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, pauseKey, counts.PauseReason); err != nil {
			return fmt.Errorf("write the forwarding pause: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM counters`); err != nil {
		return err
	}
	for name, n := range counts.Counters {
		if name == seqCounter || n == 0 || strings.HasPrefix(name, store.ForwardCounterPrefix) {
			continue // forward:<state> is rebuilt from the forwards written, below
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n) VALUES (?, ?)`, name, n); err != nil {
			return fmt.Errorf("write counter %s: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n) VALUES ('seq', ?)`, counts.LastSeq); err != nil {
		return fmt.Errorf("write seq: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, n)
		SELECT ? || state, COUNT(*) FROM forwards GROUP BY state`, store.ForwardCounterPrefix); err != nil {
		return fmt.Errorf("count forwards: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
