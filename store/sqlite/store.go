// Package sqlite keeps nouvelhook's job log, delivery log and change feed in
// SQLite (modernc.org/sqlite, pure Go).
//
// All writes go through one writer goroutine that commits whatever is queued
// in a single transaction (group commit), so many concurrent deliveries share
// one fsync while each caller still returns only after its own write is
// durable. Reads use a separate pool of read-only connections, which WAL mode
// lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/nouvelhook/nouvelhook/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// maxBatch bounds how many queued writes share one transaction, so one
// commit never holds a caller for long.
const maxBatch = 512

// Options are the store's dependencies; the zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives write errors; the zero value discards them.
	Logger zerolog.Logger
	// MaxBody is the largest delivery body the store is given
	// (NOUVELHOOK_MAX_BODY). After a failed commit, Ping writes this much
	// to prove there is room again. Zero means 1 MiB.
	MaxBody int64
	// Forward turns forwarding on: the transaction that ends a job also
	// queues its forward to the app (NOUVELHOOK_FORWARD_URL is set).
	Forward bool
}

// Store is the SQLite-backed job log. It is safe for concurrent use.
type Store struct {
	wdb *sql.DB // one connection, owned by the writer goroutine
	rdb *sql.DB // read-only pool
	now func() time.Time
	log zerolog.Logger

	stmts   *statements
	ops     chan *op
	closeMu sync.RWMutex
	closed  bool
	done    chan struct{}
	changes *notifier
	lock    *fileLock // held from Open to Close: one process per file
	health  health
	maxBody int
	forward bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its folder if needed) the SQLite file at path,
// runs any migrations not yet applied, and starts the writer. Close releases
// it. One process at a time may have a file open: Open fails, naming the
// file, while another store holds it. It also refuses, each with one line
// saying what is wrong, a path it cannot use (a folder, no permission), an
// existing empty file, a file that is not a nouvelhook database, and a
// corrupt one (SQLite's quick_check).
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, store.Errorf(store.EINVALID, "empty database path")
	}
	if err := prepareFolder(path); err != nil {
		return nil, err
	}
	exists, err := checkExisting(path, true)
	if err != nil {
		return nil, err
	}
	lk, err := lock(path)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, path, exists, opts)
	if err != nil {
		lk.unlock()
		return nil, err
	}
	s.lock = lk
	return s, nil
}

// open checks the file at path if it exists, migrates it and starts the
// writer; the caller holds the lock.
func open(ctx context.Context, path string, exists bool, opts Options) (*Store, error) {
	if exists {
		// quick_check reads every page: about 1.2 s for a log of a
		// million jobs (790 MiB) with the file in the page cache.
		start := time.Now()
		if err := inspect(ctx, path); err != nil {
			return nil, err
		}
		opts.Logger.Info().Dur("took", time.Since(start)).Msg("database checked")
	}
	// Pragmas go in the DSN so that every pooled connection gets them.
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	wdb, err := sql.Open("sqlite", "file:"+path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, openProblem(path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, openProblem(path, err)
	}
	// One process has the file: a lease left by the last one is of a
	// forwarder that is gone, and would only delay its forward.
	if _, err := wdb.ExecContext(ctx, `UPDATE forwards SET lease_until = NULL WHERE lease_until IS NOT NULL`); err != nil {
		wdb.Close()
		return nil, openProblem(path, err)
	}
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		wdb.Close()
		return nil, openProblem(path, err)
	}
	rdb.SetMaxOpenConns(4)
	stmts, err := prepare(ctx, wdb)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, openProblem(path, err)
	}
	s := &Store{
		wdb: wdb, rdb: rdb, now: opts.Now, log: opts.Logger, stmts: stmts,
		ops: make(chan *op, maxBatch), done: make(chan struct{}), changes: newNotifier(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.maxBody, s.forward = int(opts.MaxBody), opts.Forward
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	go s.writeLoop()
	return s, nil
}

// Close stops taking writes, commits those already queued, and closes the
// database. Later writes fail with ErrUnavailable.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ops)
	s.closeMu.Unlock()
	<-s.done
	s.stmts.close()
	// The lock goes last, so no other process opens the file before this
	// one has let go of it.
	err := errors.Join(s.rdb.Close(), s.wdb.Close())
	return errors.Join(err, s.lock.unlock())
}

// migrate applies, in name order, each embedded migration not yet recorded in
// schema_migrations, each in its own transaction.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := migrateOne(ctx, db, name); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

func migrateOne(ctx context.Context, db *sql.DB, name string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`,
		name, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// unavailable wraps a database error from the write path as ErrUnavailable,
// keeping SQLite's text for the log.
func unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: %s", strings.TrimSpace(err.Error()))
}
