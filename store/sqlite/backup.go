package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the SQLite log at src to the new file
// dst. It opens src read-only, without taking the store's lock or running
// migrations, so it works while a `serve` holds the file: VACUUM INTO reads
// one snapshot, which WAL mode lets stand beside the writer, and writes it
// compacted. An existing dst is refused, so a backup never overwrites
// anything; a failed backup leaves no dst behind. The copy opens as a store.
func Backup(ctx context.Context, src, dst string) error {
	if src == "" || dst == "" {
		return errors.New("backup needs a source and a destination path")
	}
	exists, err := checkExisting(src, false)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("database %s does not exist", src)
	}
	if err := checkNotEmpty(src); err != nil {
		return err
	}
	absSrc, err1 := filepath.Abs(src)
	absDst, err2 := filepath.Abs(dst)
	if err1 == nil && err2 == nil && absSrc == absDst {
		return fmt.Errorf("backup %s: the copy must be a new file, not the database itself", dst)
	}
	// Creating dst exclusively claims the name, so two backups to one name
	// cannot both write it; VACUUM INTO accepts an empty file.
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("backup %s already exists; choose a new file name", dst)
	}
	if err != nil {
		return fmt.Errorf("backup: cannot create the copy: %s", osProblem(err))
	}
	f.Close()
	if err := vacuumInto(ctx, src, dst); err != nil {
		os.Remove(dst)
		return err
	}
	// VACUUM INTO does not fsync its output; a backup must be on disk when
	// the command says it is done.
	if err := syncPath(dst); err != nil {
		os.Remove(dst)
		return fmt.Errorf("backup: sync the copy: %s", osProblem(err))
	}
	if err := syncPath(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("backup: sync the copy's folder: %s", osProblem(err))
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", src, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", src, err)
	}
	defer conn.Close()
	tables, err := checkSchema(ctx, conn, src)
	if err != nil {
		return err
	}
	if !tables {
		return fmt.Errorf("database %s is not a nouvelhook log (it has no tables)", src)
	}
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("backup %s to %s: %w", src, dst, err)
	}
	return nil
}
