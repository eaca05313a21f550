package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgres is the database the Postgres targets make their schemas
// in when neither -pg nor NOUVELHOOK_TEST_POSTGRES says otherwise.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// AppPrefix starts the application_name of every connection the replicas
// make, so that their backends can be told from other clients' in
// pg_stat_activity.
const AppPrefix = "nhbench_"

// PGSchema is a Postgres target's schema, made for the run and dropped
// after it.
type PGSchema struct {
	Schema  string
	AppName string
	DBURL   string // what the replicas get as NOUVELHOOK_DB
}

// NewPGSchema creates a fresh schema for the target name and returns the
// URL its replicas use: search_path set to the schema, application_name
// marking their connections.
func NewPGSchema(ctx context.Context, base, name string) (*PGSchema, error) {
	b := make([]byte, 4)
	rand.Read(b)
	p := &PGSchema{Schema: "nhbench_" + name + "_" + hex.EncodeToString(b), AppName: AppPrefix + name}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("-pg: %w", err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+p.Schema)
	q.Set("application_name", p.AppName)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	p.DBURL = u.String()
	err = WithConn(ctx, base, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `CREATE SCHEMA `+p.Schema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create schema %s: %w", p.Schema, err)
	}
	return p, nil
}

// Drop removes the schema and everything in it. It has a context of its
// own, since it also runs after the run's has expired.
func (p *PGSchema) Drop(base string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return WithConn(ctx, base, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+p.Schema+` CASCADE`)
		return err
	})
}

// WithConn runs f on a connection of its own to base.
func WithConn(ctx context.Context, base string, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return f(c)
}

// DirectURL is u without pgxpool's pool_* parameters, which a single
// connection (the driver's own) does not take.
func DirectURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	for k := range q {
		if strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	p.RawQuery = q.Encode()
	return p.String()
}
