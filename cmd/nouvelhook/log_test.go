package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nouvelhook/nouvelhook/config"
)

// The console format writes ANSI colours only to a terminal: a buffer, a
// file or a pipe gets plain text.
func TestConsoleLogHasNoColourOffTerminal(t *testing.T) {
	cfg := config.Default()
	cfg.LogFormat = "console"

	var buf bytes.Buffer
	l := newLogger(cfg, &buf)
	l.Warn().Str("job_id", "job-1").Msg("console line")

	file, err := os.Create(filepath.Join(t.TempDir(), "log.txt"))
	if err != nil {
		t.Fatal(err)
	}
	l = newLogger(cfg, file)
	l.Error().Str("job_id", "job-2").Msg("file line")
	file.Close()
	fromFile, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l = newLogger(cfg, w)
	l.Info().Msg("pipe line")
	w.Close()
	var fromPipe bytes.Buffer
	fromPipe.ReadFrom(r)
	r.Close()

	for name, out := range map[string]string{"buffer": buf.String(), "file": string(fromFile), "pipe": fromPipe.String()} {
		if strings.Contains(out, "\x1b") {
			t.Errorf("console log to a %s: got %q, want no ESC byte", name, out)
		}
		if !strings.Contains(out, " line") {
			t.Errorf("console log to a %s: got %q, want the message", name, out)
		}
	}
	if !strings.Contains(buf.String(), "job_id=job-1") {
		t.Errorf("console log: got %q, want job_id=job-1", buf.String())
	}
}
