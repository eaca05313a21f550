package main

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/config"
)

func newLogger(cfg config.Config, w io.Writer) zerolog.Logger {
	if cfg.LogFormat == "console" {
		// Colours only for a person at a terminal: in a file or a log
		// collector the escape codes are noise.
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
	}
	return zerolog.New(w).Level(cfg.LogLevel).With().Timestamp().Logger()
}

// isTerminal reports whether w is a character device, as a terminal is; a
// file, a pipe or a buffer is not. It needs no isatty package: /dev/null,
// the one other character device stderr is commonly sent to, discards the
// colours anyway.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
