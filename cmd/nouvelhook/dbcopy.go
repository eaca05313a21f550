package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/postgres"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

const dbCopySynopsis = `db copy SRC DST

Copies a whole log into an empty one: SQLite to Postgres, Postgres to SQLite,
or SQLite to SQLite. SRC and DST are each a SQLite file path or a
postgres:// URL. Every job (with its poll schedule and missed-webhook state),
every delivery (raw bytes, copies, outcome), the feed's seqs, the last seq,
the counters behind stats, the forwarding queue (each forward, its attempts,
the pause) and the polls of each job's timeline are kept; the copy's counts
are then checked against the source's.

SRC is read read-only, in one snapshot, so it may be copied while serve runs
on it; deliveries that arrive after the snapshot are not in the copy, so to
move a log for good stop serve first. DST must be empty (a new file, or a
database or schema that holds no jobs): anything else is refused, unchanged.
Start serve on DST once the copy is done. A password may stay out of the URL
(and of the shell's history) in PGPASSWORD or ~/.pgpass.`

// dbCopy copies the log at SRC into the empty log at DST and checks that
// the counts agree.
func dbCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("db copy", dbCopySynopsis, stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 2, 2, "SRC and DST"); err != nil {
		return err
	}
	srcDB, dstDB := pos[0], pos[1]
	if err := config.CheckDB(srcDB); err != nil {
		return usageError("db copy: SRC %w", err)
	}
	if err := config.CheckDB(dstDB); err != nil {
		return usageError("db copy: DST %w", err)
	}
	if sameLog(srcDB, dstDB) {
		return usageError("db copy: SRC and DST are the same log (%s)", config.RedactDB(srcDB))
	}
	src, err := openSource(ctx, srcDB)
	if err != nil {
		return fmt.Errorf("db copy: SRC %w", err)
	}
	defer src.Close()
	counts, err := copyInto(ctx, src, dstDB)
	if err != nil {
		return fmt.Errorf("db copy: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "copied %s to %s: %d jobs, %d deliveries, %d forwards, last seq %d; counts checked\n",
		config.RedactDB(srcDB), config.RedactDB(dstDB), counts.Jobs, counts.Deliveries, counts.Forwards, counts.LastSeq)
	return err
}

// sameLog reports whether a and b name one log: the same URL, or paths to
// the same file.
func sameLog(a, b string) bool {
	if a == b {
		return true
	}
	if config.DBBackend(a) != config.BackendSQLite || config.DBBackend(b) != config.BackendSQLite {
		return false
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

type exportSource interface {
	store.Exporter
	Close() error
}

func openSource(ctx context.Context, db string) (exportSource, error) {
	if config.DBBackend(db) == config.BackendPostgres {
		return postgres.OpenSource(ctx, db)
	}
	return sqlite.OpenSource(ctx, db)
}

type importTarget interface {
	store.Importer
	Close() error
}

// copyInto opens the log at dstDB (creating it), imports src into it and
// checks the counts. A SQLite file that this copy created is removed again
// if the copy fails, so that a failed copy can simply be run again.
func copyInto(ctx context.Context, src store.Exporter, dstDB string) (store.LogCounts, error) {
	shown := config.RedactDB(dstDB)
	var dst importTarget
	created := false
	if config.DBBackend(dstDB) == config.BackendPostgres {
		st, err := postgres.Open(ctx, dstDB, postgres.Options{})
		if err != nil {
			return store.LogCounts{}, fmt.Errorf("DST %w", err)
		}
		dst = st
	} else {
		_, err := os.Stat(dstDB)
		created = errors.Is(err, fs.ErrNotExist)
		st, err := sqlite.Open(ctx, dstDB, sqlite.Options{})
		if err != nil {
			return store.LogCounts{}, fmt.Errorf("DST %w", err)
		}
		dst = st
	}
	var want store.LogCounts
	got, err := dst.Import(ctx, func(ctx context.Context, fn func(store.Record) error) (store.LogCounts, error) {
		c, err := src.Export(ctx, fn)
		want = c
		return c, err
	})
	if err == nil {
		if d := got.Diff(want); d != "" {
			err = fmt.Errorf("the copy in %s does not match its source: %s", shown, d)
		}
	} else {
		err = fmt.Errorf("DST %s: %w", shown, err)
	}
	err = errors.Join(err, dst.Close())
	if err != nil && created {
		for _, p := range []string{dstDB, dstDB + "-wal", dstDB + "-shm", dstDB + ".lock"} {
			os.Remove(p)
		}
	}
	return got, err
}
