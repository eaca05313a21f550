package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dustin/go-humanize"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

const dbUsage = `Usage: nouvelhook db COMMAND [flags]

Commands:
  backup FILE [--db PATH]   a consistent copy of the SQLite log, taken while
                            serve runs; FILE must not exist
  copy SRC DST              copies a whole log into an empty one, SQLite to
                            Postgres or back; SRC may be served meanwhile

The log is NOUVELHOOK_DB or the file NOUVELHOOK_DB_FILE names (default
nouvelhook.db) unless --db names it.
Run "nouvelhook db COMMAND --help" for a command's flags.
`

func runDB(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return usageError("db: no command given (backup)")
	}
	switch args[0] {
	case "backup":
		return dbBackup(ctx, args[1:], getenv, stdout, stderr)
	case "copy":
		return dbCopy(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, dbUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, dbUsage)
	return usageError("db: unknown command %q", args[0])
}

// dbBackup copies the log with sqlite.Backup, which reads one snapshot of it
// read-only and so needs neither the sqlite3 binary nor serve's lock.
func dbBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("db backup", "db backup FILE [--db PATH]\n\n"+
		"Writes a consistent copy of the SQLite log to FILE, a new file, while serve\n"+
		"runs (or not). The copy is compacted and opens as a log of its own: to restore,\n"+
		"stop serve and put the copy in the log's place.", stderr)
	src := fs.String("db", "", "the SQLite log's `path` (default: NOUVELHOOK_DB, else "+config.Default().DBPath+")")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 1, 1, "FILE"); err != nil {
		return err
	}
	if *src == "" {
		if *src, err = config.EnvDB(getenv); err != nil {
			return usageError("db backup: %w", err)
		}
	} else if err := config.CheckDB(*src); err != nil {
		return usageError("db backup: --db %w", err)
	}
	if config.DBBackend(*src) != config.BackendSQLite {
		return usageError("db backup: the log is a Postgres database (%s), not a SQLite file; back it up with pg_dump", config.RedactDB(*src))
	}
	dst := pos[0]
	if err := sqlite.Backup(ctx, *src, dst); err != nil {
		return fmt.Errorf("db backup: %w", err)
	}
	size := ""
	if fi, err := os.Stat(dst); err == nil {
		size = " (" + humanize.IBytes(uint64(fi.Size())) + ")"
	}
	_, err = fmt.Fprintf(stdout, "backed up %s to %s%s\n", *src, dst, size)
	return err
}
