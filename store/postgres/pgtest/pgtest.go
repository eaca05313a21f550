// Package pgtest gives a test an empty Postgres schema of its own, in the
// database named by NOUVELHOOK_TEST_POSTGRES, and skips the test when the
// variable is not set (.ci/run sets it). Only tests import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env names the variable holding the URL of a Postgres the tests may
// create schemas in, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const Env = "NOUVELHOOK_TEST_POSTGRES"

// BaseURL returns the test database's URL, or skips the test.
func BaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		t.Skip(Env + " is not set: this test needs a Postgres database to create schemas in " +
			"(e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable; .ci/run sets it)")
	}
	return u
}

// Schema creates an empty schema named prefix and random hex, dropped
// when the test ends, and returns the test database's URL with its
// search_path set to it.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	base := BaseURL(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := prefix + hex.EncodeToString(b)
	exec := func(sql string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, Direct(t, base))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Direct returns dbURL without pgxpool's pool_* parameters, which a
// single connection (pgx.Connect) does not take.
func Direct(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}
