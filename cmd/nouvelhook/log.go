package main

import (
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/config"
)

func newLogger(cfg config.Config, w io.Writer) zerolog.Logger {
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(cfg.LogLevel).With().Timestamp().Logger()
}
