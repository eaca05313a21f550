package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/store/postgres/pgtest"
)

// pgSchemaURL returns a URL for an empty schema of the database named by
// NOUVELHOOK_TEST_POSTGRES, with password as its password (which a trust
// login ignores); the schema is dropped when the test ends. Without the
// variable the test is skipped.
func pgSchemaURL(t *testing.T, password string) string {
	t.Helper()
	u, err := url.Parse(pgtest.Schema(t, "nh_serve_"))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

// serve on a postgres:// URL keeps its log in Postgres: a delivery is
// there for a second service on the same URL to answer, and the URL's
// password shows in no log line.
func TestServeOnPostgres(t *testing.T) {
	const password = "pg-s3cret-pw"
	dbURL := pgSchemaURL(t, password)
	urlFile := filepath.Join(t.TempDir(), "db-url")
	if err := os.WriteFile(urlFile, []byte(dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir) // a SQLite store would make its file here

	a := startService(t, map[string]string{"NOUVELHOOK_DB": dbURL})
	a.mustDeliver("pg-job-1", "completed")
	b := startService(t, map[string]string{"NOUVELHOOK_DB": "", "NOUVELHOOK_DB_FILE": urlFile})
	var j struct{ JobID, Status string }
	if code := b.adminGet("/v1/jobs/pg-job-1", &j); code != 200 || j.JobID != "pg-job-1" || j.Status != "completed" {
		t.Errorf("the other service's job: got %d %+v, want 200 and pg-job-1 completed", code, j)
	}
	if code := b.adminGet("/readyz", nil); code != 200 {
		t.Errorf("readyz: got %d, want 200", code)
	}
	for _, s := range []*testService{a, b} {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: got %v, want nil", err)
		}
		log := s.Log.String()
		if strings.Contains(log, password) {
			t.Errorf("the log holds the URL's password:\n%s", log)
		}
		if !strings.Contains(log, `"db_backend":"postgres"`) || !strings.Contains(log, ":xxxxx@") {
			t.Errorf("the startup line lacks the Postgres backend and the masked URL:\n%s", log)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("serve made %v in its working folder (%v), want nothing", entries, err)
	}
}

// serve on a Postgres URL that cannot be reached stops with one line naming
// NOUVELHOOK_DB and the URL with its password masked; the password is in
// neither the error nor the log, and nothing is made on disk from the URL.
func TestServePostgresURLKeepsPasswordOut(t *testing.T) {
	const password = "s3cret"
	const dbURL = "postgres://u:" + password + "@127.0.0.1:1/db" // port 1: nothing listens
	urlFile := filepath.Join(t.TempDir(), "db-url")
	if err := os.WriteFile(urlFile, []byte(dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"NOUVELHOOK_DB", map[string]string{"NOUVELHOOK_DB": dbURL}, nil},
		{"NOUVELHOOK_DB_FILE", map[string]string{"NOUVELHOOK_DB_FILE": urlFile}, nil},
		{"--db-file", nil, []string{"--db-file", urlFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir) // a SQLite store would make its file here
			env := map[string]string{
				"NOUVEL_WEBHOOK_SECRET":   testSecret,
				"NOUVELHOOK_LISTEN":       "127.0.0.1:0",
				"NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:0",
				"NOUVELHOOK_LOG_LEVEL":    "debug",
			}
			for k, v := range tt.env {
				env[k] = v
			}
			var logs bytes.Buffer
			cfg, err := config.Load(tt.args, mapEnv(env), &logs)
			if err != nil {
				t.Fatalf("config: got %v, want the URL accepted", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Should it listen after all, it stops at once, and the test fails.
			err = serve(ctx, cfg, newLogger(cfg, &logs), func(string, string) { cancel() })
			if err == nil {
				t.Fatalf("serve: got no error, want one; log:\n%s", logs.String())
			}
			var line bytes.Buffer
			code := exitCode(err, &line)
			if code == 0 || strings.Count(line.String(), "\n") != 1 {
				t.Errorf("got exit %d and %q, want a non-zero exit and one line", code, line.String())
			}
			for _, want := range []string{"NOUVELHOOK_DB", "postgres://u:xxxxx@127.0.0.1:1/db"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got error %q, want it to hold %q", err, want)
				}
			}
			for what, text := range map[string]string{"error": err.Error(), "log": logs.String()} {
				if strings.Contains(text, password) {
					t.Errorf("the %s holds the password: %q", what, text)
				}
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("serve made %v in its working folder (%v), want nothing", entries, err)
			}
		})
	}
}
