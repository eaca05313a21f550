package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The checks here run before SQLite sees the file, because SQLite reports
// most of what can be wrong with a path as "unable to open database file
// (14)", and because SQLite silently turns an empty or missing file into a
// new database, which for a log that was expected means lost history. They
// never open the database file with Go's os package: closing such a file
// would drop the POSIX locks SQLite holds on it in this process.

// prepareFolder creates the database's folder if needed and checks that it
// can hold the database and its -wal and -shm files.
func prepareFolder(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("database %s: cannot create its folder: %s", path, osProblem(err))
	}
	if err := access(dir, accessW|accessX); err != nil {
		return fmt.Errorf("database %s: cannot write its folder %s: %s (uid %d); SQLite keeps its -wal and -shm files beside the database",
			path, dir, errnoText(err), os.Getuid())
	}
	return nil
}

const (
	accessR = 0x4
	accessW = 0x2
	accessX = 0x1
)

// checkExisting checks a path that should hold a database: it reports
// whether the file exists, and refuses a folder, a special file, and one
// this process cannot read (and, with write, write).
func checkExisting(path string, write bool) (exists bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("database %s: %s", path, osProblem(err))
	}
	if fi.IsDir() {
		return true, fmt.Errorf("database %s is a directory, not a file (uid %d)", path, os.Getuid())
	}
	if !fi.Mode().IsRegular() {
		return true, fmt.Errorf("database %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	mode, what := uint32(accessR), "read"
	if write {
		mode, what = accessR|accessW, "read and write"
	}
	if err := access(path, mode); err != nil {
		return true, fmt.Errorf("database %s: %s: uid %d cannot %s it", path, errnoText(err), os.Getuid(), what)
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(side); err == nil && write {
			if err := access(side, accessR|accessW); err != nil {
				return true, fmt.Errorf("database %s: %s: uid %d cannot read and write %s", path, errnoText(err), os.Getuid(), side)
			}
		}
	}
	return true, nil
}

// checkNotEmpty refuses an existing empty file: SQLite would start a new log
// in it, and a log that was expected and is gone must not look like a fresh
// start.
func checkNotEmpty(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("database %s: %s", path, osProblem(err))
	}
	if fi.Size() == 0 {
		return fmt.Errorf("database %s is an empty (0-byte) file, not a nouvelhook log; if no log is lost, delete it to start a new one", path)
	}
	return nil
}

// checkSchema refuses a file that SQLite cannot read as a database, and a
// database that is not a nouvelhook log: one that has tables but not both
// schema_migrations and jobs. A database with no tables is a new log. It
// reports whether the log has tables.
func checkSchema(ctx context.Context, q querier, path string) (bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return false, openProblem(path, err)
	}
	defer rows.Close()
	tables := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return false, openProblem(path, err)
		}
		tables[name] = true
	}
	if err := rows.Err(); err != nil {
		return false, openProblem(path, err)
	}
	if len(tables) == 0 {
		return false, nil
	}
	if !tables["schema_migrations"] || !tables["jobs"] {
		return true, fmt.Errorf("database %s is a SQLite database but not a nouvelhook log (it has no jobs or schema_migrations table); refusing to change it", path)
	}
	return true, nil
}

// quickCheck runs SQLite's quick_check, which reads every page and checks
// the b-trees' structure, and refuses a corrupt file with its first finding.
// inspect checks an existing database file before the writer opens it, on a
// read-only connection, so that a file that is refused is not changed (the
// writer would switch it to WAL mode first).
func inspect(ctx context.Context, path string) error {
	if err := checkNotEmpty(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return openProblem(path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return openProblem(path, err)
	}
	defer conn.Close()
	tables, err := checkSchema(ctx, conn, path)
	if err != nil || !tables {
		return err
	}
	return quickCheck(ctx, conn, path)
}

func quickCheck(ctx context.Context, q querier, path string) error {
	rows, err := q.QueryContext(ctx, `PRAGMA quick_check(1)`)
	if err != nil {
		return openProblem(path, err)
	}
	defer rows.Close()
	var first string
	if rows.Next() {
		if err := rows.Scan(&first); err != nil {
			return openProblem(path, err)
		}
	}
	if err := rows.Err(); err != nil {
		return openProblem(path, err)
	}
	if first != "ok" {
		return corrupt(path, first)
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func corrupt(path, finding string) error {
	finding = strings.Join(strings.Fields(finding), " ")
	return fmt.Errorf("database %s is corrupt (%s); restore it from a backup, or move it away to start a new log", path, finding)
}

// openProblem turns a SQLite error met while opening path into one line
// that says what is wrong, keeping SQLite's text when it is nothing known.
func openProblem(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return fmt.Errorf("database %s is not a SQLite database; refusing to change it", path)
		case sqlite3.SQLITE_CORRUPT:
			return corrupt(path, strings.TrimSpace(se.Error()))
		case sqlite3.SQLITE_BUSY:
			return fmt.Errorf("database %s is locked by another program: %s", path, strings.TrimSpace(se.Error()))
		}
	}
	return fmt.Errorf("database %s: %w", path, err)
}

// osProblem says which path failed and why, with the uid, since "permission
// denied" means nothing without knowing who was denied.
func osProblem(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %s: %s (uid %d)", pe.Op, pe.Path, errnoText(pe.Err), os.Getuid())
	}
	return fmt.Sprintf("%v (uid %d)", err, os.Getuid())
}

func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOTDIR:
			return "not a directory (a part of the path is a file)"
		}
		return errno.Error()
	}
	return err.Error()
}
