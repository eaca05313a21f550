package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Secret values used throughout, so that every error can be searched for them.
const (
	hookSecret  = "whsec-SECRET-1"
	apiKey      = "nvl_SECRET-2"
	adminToken  = "tok-SECRET-3"
	fileSecret  = "file-SECRET-4"
	otherSecret = "whsec-SECRET-5"
	dbPassword  = "pg-SECRET-6"
	// forwardKey is the key that forwardSecret encodes.
	forwardKey    = "fwd-SECRET-7"
	forwardSecret = "whsec_ZndkLVNFQ1JFVC03"
	// badForwardSecret is not base64.
	badForwardSecret = "whsec_fwd-SECRET-8!"
	appUser          = "app-SECRET-9"
	appPassword      = "app-SECRET-10"
	appToken         = "app-SECRET-11"
)

var allSecrets = []string{hookSecret, apiKey, adminToken, fileSecret, otherSecret, dbPassword,
	forwardKey, forwardSecret, "ZndkLVNFQ1JFVC03", badForwardSecret, appUser, appPassword, appToken}

// appURL is a forward URL with credentials in its user info and its query.
const appURL = "https://" + appUser + ":" + appPassword + "@app.example.com:8443/hooks/nouvel?token=" + appToken + "#frag"

// pgURL is a Postgres URL whose password is dbPassword.
const pgURL = "postgres://nouvelhook:" + dbPassword + "@db.internal:5432/jobs?sslmode=require"

// getenv returns a getenv backed by m.
func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// with returns base with overrides applied; an empty override unsets.
func with(base, overrides map[string]string) map[string]string {
	m := make(map[string]string)
	for k, v := range base {
		m[k] = v
	}
	for k, v := range overrides {
		m[k] = v
	}
	return m
}

// writeFile writes content to a new file in a temporary folder and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkNoSecret fails the test when msg holds any test secret.
func checkNoSecret(t *testing.T, msg string) {
	t.Helper()
	for _, s := range allSecrets {
		if strings.Contains(msg, s) {
			t.Errorf("%q contains the secret %q", msg, s)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	got, err := Load(nil, getenv(map[string]string{"NOUVEL_WEBHOOK_SECRET": hookSecret}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Spelled out rather than taken from Default, so that a drift from
	// SPEC.md's configuration table fails here.
	want := Config{
		WebhookSecrets: []string{hookSecret},
		APIBaseURL:     "https://app.nouvel.ai",
		Listen:         ":8080",
		WebhookPath:    "/webhooks/nouvel",
		AdminListen:    "127.0.0.1:8081",
		DBPath:         "nouvelhook.db",
		PollBudget:     30,
		PollInterval:   10 * time.Second,
		TrackTTL:       24 * time.Hour,
		MissedGrace:    2 * time.Minute,
		MaxBody:        1 << 20,
		MaxConns:       1024,
		Retain:         0,
		LogLevel:       zerolog.InfoLevel,
		LogFormat:      "json",
		ForwardURL:     "",
		ForwardKey:     nil,
		ForwardSchedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
			2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour},
		ForwardTimeout:     15 * time.Second,
		ForwardConcurrency: 4,
		ForwardOrdered:     false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.WebhookURL() != "" {
		t.Errorf("got WebhookURL %q, want empty without a public URL", got.WebhookURL())
	}
}

func TestLoad(t *testing.T) {
	forwardSecretFile := writeFile(t, forwardSecret+"\n")
	secretFile := writeFile(t, " "+fileSecret+" , "+otherSecret+"\n\n")
	keyFile := writeFile(t, apiKey+"\r\n")
	tokenFile := writeFile(t, adminToken+"\n")
	dbFile := writeFile(t, pgURL+"\n")

	base := map[string]string{"NOUVEL_WEBHOOK_SECRET": hookSecret}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want func(c *Config) // changes a default Config with hookSecret into the wanted one
	}{
		{
			name: "env overrides default",
			env: map[string]string{
				"NOUVEL_API_KEY":           apiKey,
				"NOUVEL_API_BASE_URL":      "http://127.0.0.1:9999",
				"NOUVELHOOK_LISTEN":        ":9000",
				"NOUVELHOOK_WEBHOOK_PATH":  "/hook",
				"NOUVELHOOK_ADMIN_LISTEN":  "0.0.0.0:9001",
				"NOUVELHOOK_ADMIN_TOKEN":   adminToken,
				"NOUVELHOOK_PUBLIC_URL":    "https://hooks.example.com",
				"NOUVELHOOK_DB":            "/var/lib/nouvelhook/jobs.db",
				"NOUVELHOOK_POLL_BUDGET":   "45",
				"NOUVELHOOK_POLL_INTERVAL": "30s",
				"NOUVELHOOK_TRACK_TTL":     "1h",
				"NOUVELHOOK_MISSED_GRACE":  "0s",
				"NOUVELHOOK_MAX_BODY":      "2MiB",
				"NOUVELHOOK_LOG_LEVEL":     "debug",
				"NOUVELHOOK_LOG_FORMAT":    "console",
			},
			want: func(c *Config) {
				c.APIKey = apiKey
				c.APIBaseURL = "http://127.0.0.1:9999"
				c.Listen = ":9000"
				c.WebhookPath = "/hook"
				c.AdminListen = "0.0.0.0:9001"
				c.AdminToken = adminToken
				c.PublicURL = "https://hooks.example.com"
				c.DBPath = "/var/lib/nouvelhook/jobs.db"
				c.PollBudget = 45
				c.PollInterval = 30 * time.Second
				c.TrackTTL = time.Hour
				c.MissedGrace = 0
				c.MaxBody = 2 << 20
				c.LogLevel = zerolog.DebugLevel
				c.LogFormat = "console"
			},
		},
		{
			name: "every flag sets its field",
			args: []string{
				"--webhook-secret", otherSecret,
				"--api-key", apiKey,
				"--api-base-url", "https://api.example.com",
				"--listen", "127.0.0.1:7000",
				"--webhook-path", "/in",
				"--admin-listen", "10.0.0.2:7001",
				"--admin-token", adminToken,
				"--public-url", "https://hooks.example.com/base/",
				"--db", "x.db",
				"--poll-budget", "60",
				"--poll-interval", "1s",
				"--track-ttl", "2h",
				"--missed-grace", "5m",
				"--max-body", "64KiB",
				"--log-level", "WARN",
				"--log-format", "console",
			},
			want: func(c *Config) {
				c.WebhookSecrets = []string{otherSecret}
				c.APIKey = apiKey
				c.APIBaseURL = "https://api.example.com"
				c.Listen = "127.0.0.1:7000"
				c.WebhookPath = "/in"
				c.AdminListen = "10.0.0.2:7001"
				c.AdminToken = adminToken
				c.PublicURL = "https://hooks.example.com/base/"
				c.DBPath = "x.db"
				c.PollBudget = 60
				c.PollInterval = time.Second
				c.TrackTTL = 2 * time.Hour
				c.MissedGrace = 5 * time.Minute
				c.MaxBody = 64 << 10
				c.LogLevel = zerolog.WarnLevel
				c.LogFormat = "console"
			},
		},
		{
			name: "flag overrides env",
			env:  map[string]string{"NOUVELHOOK_LISTEN": ":9000", "NOUVELHOOK_POLL_BUDGET": "5"},
			args: []string{"--listen=:9100", "-poll-budget", "6"},
			want: func(c *Config) { c.Listen = ":9100"; c.PollBudget = 6 },
		},
		{
			name: "flag not given leaves env",
			env:  map[string]string{"NOUVELHOOK_LISTEN": ":9000"},
			args: []string{"--db", "other.db"},
			want: func(c *Config) { c.Listen = ":9000"; c.DBPath = "other.db" },
		},
		{
			name: "empty env counts as unset",
			env:  map[string]string{"NOUVELHOOK_LISTEN": "", "NOUVELHOOK_POLL_INTERVAL": ""},
			want: func(c *Config) {},
		},
		{
			name: "rotation list with spaces and empties",
			env:  map[string]string{"NOUVEL_WEBHOOK_SECRET": " , " + hookSecret + " ,," + otherSecret + ", "},
			want: func(c *Config) { c.WebhookSecrets = []string{hookSecret, otherSecret} },
		},
		{
			name: "secret files are read and trimmed",
			env: map[string]string{
				"NOUVEL_WEBHOOK_SECRET":       "",
				"NOUVEL_WEBHOOK_SECRET_FILE":  secretFile,
				"NOUVEL_API_KEY_FILE":         keyFile,
				"NOUVELHOOK_ADMIN_TOKEN_FILE": tokenFile,
			},
			want: func(c *Config) {
				c.WebhookSecrets = []string{fileSecret, otherSecret}
				c.APIKey = apiKey
				c.AdminToken = adminToken
			},
		},
		{
			name: "file flags",
			args: []string{"--webhook-secret-file", secretFile, "--api-key-file", keyFile, "--admin-token-file", tokenFile},
			want: func(c *Config) {
				c.WebhookSecrets = []string{fileSecret, otherSecret}
				c.APIKey = apiKey
				c.AdminToken = adminToken
			},
		},
		{
			name: "a secret flag overrides both env forms",
			env:  map[string]string{"NOUVEL_API_KEY_FILE": "/does/not/exist"},
			args: []string{"--webhook-secret", otherSecret, "--api-key", apiKey},
			want: func(c *Config) { c.WebhookSecrets = []string{otherSecret}; c.APIKey = apiKey },
		},
		{
			name: "admin listen on localhost needs no token",
			env:  map[string]string{"NOUVELHOOK_ADMIN_LISTEN": "localhost:8081"},
			want: func(c *Config) { c.AdminListen = "localhost:8081" },
		},
		{
			name: "admin listen on ::1 needs no token",
			env:  map[string]string{"NOUVELHOOK_ADMIN_LISTEN": "[::1]:8081"},
			want: func(c *Config) { c.AdminListen = "[::1]:8081" },
		},
		{
			name: "admin listen off loopback with a token",
			env:  map[string]string{"NOUVELHOOK_ADMIN_LISTEN": "0.0.0.0:8081", "NOUVELHOOK_ADMIN_TOKEN": adminToken},
			want: func(c *Config) { c.AdminListen = "0.0.0.0:8081"; c.AdminToken = adminToken },
		},
		{
			name: "retain in days, max conns",
			env:  map[string]string{"NOUVELHOOK_RETAIN": "90d", "NOUVELHOOK_MAX_CONNS": "200"},
			want: func(c *Config) { c.Retain = 90 * 24 * time.Hour; c.MaxConns = 200 },
		},
		{
			name: "retain as a duration, 0 keeps all",
			env:  map[string]string{"NOUVELHOOK_RETAIN": "36h"},
			want: func(c *Config) { c.Retain = 36 * time.Hour },
		},
		{
			name: "retain and max conns flags win",
			env:  map[string]string{"NOUVELHOOK_RETAIN": "90d", "NOUVELHOOK_MAX_CONNS": "200"},
			args: []string{"--retain", "0", "--max-conns", "1"},
			want: func(c *Config) { c.Retain = 0; c.MaxConns = 1 },
		},
		{
			name: "a postgres URL",
			env:  map[string]string{"NOUVELHOOK_DB": pgURL},
			want: func(c *Config) { c.DBPath = pgURL },
		},
		{
			name: "a postgresql URL over a unix socket",
			env:  map[string]string{"NOUVELHOOK_DB": "postgresql:///jobs?host=/var/run/postgresql"},
			want: func(c *Config) { c.DBPath = "postgresql:///jobs?host=/var/run/postgresql" },
		},
		{
			name: "a postgres URL with the database as a parameter",
			env:  map[string]string{"NOUVELHOOK_DB": "postgres://u@127.0.0.1?dbname=jobs"},
			want: func(c *Config) { c.DBPath = "postgres://u@127.0.0.1?dbname=jobs" },
		},
		{
			name: "a SQLite path with a colon",
			env:  map[string]string{"NOUVELHOOK_DB": "./data:2026/jobs.db"},
			want: func(c *Config) { c.DBPath = "./data:2026/jobs.db" },
		},
		{
			name: "db file is read and trimmed",
			env:  map[string]string{"NOUVELHOOK_DB_FILE": dbFile},
			want: func(c *Config) { c.DBPath = pgURL },
		},
		{
			name: "db file flag overrides both env forms",
			env:  map[string]string{"NOUVELHOOK_DB": "env.db"},
			args: []string{"--db-file", dbFile},
			want: func(c *Config) { c.DBPath = pgURL },
		},
		{
			name: "db flag overrides the env's file",
			env:  map[string]string{"NOUVELHOOK_DB_FILE": "/does/not/exist"},
			args: []string{"--db", "flag.db"},
			want: func(c *Config) { c.DBPath = "flag.db" },
		},
		{
			name: "forwarding from the env",
			env: map[string]string{
				"NOUVELHOOK_FORWARD_URL":         appURL,
				"NOUVELHOOK_FORWARD_SECRET":      forwardSecret,
				"NOUVELHOOK_FORWARD_SCHEDULE":    "1s, 2m ,3h",
				"NOUVELHOOK_FORWARD_TIMEOUT":     "30s",
				"NOUVELHOOK_FORWARD_CONCURRENCY": "16",
				"NOUVELHOOK_FORWARD_ORDERED":     "false",
			},
			want: func(c *Config) {
				c.ForwardURL = appURL
				c.ForwardKey = []byte(forwardKey)
				c.ForwardSchedule = []time.Duration{time.Second, 2 * time.Minute, 3 * time.Hour}
				c.ForwardTimeout = 30 * time.Second
				c.ForwardConcurrency = 16
			},
		},
		{
			name: "every forward flag sets its field",
			env:  map[string]string{"NOUVELHOOK_FORWARD_URL": "http://wrong.example", "NOUVELHOOK_FORWARD_CONCURRENCY": "9"},
			args: []string{
				"--forward-url", "http://127.0.0.1:3000/in",
				"--forward-secret", forwardSecret,
				"--forward-schedule", "10s",
				"--forward-timeout", "2s",
				"--forward-concurrency", "1",
				"--forward-ordered",
			},
			want: func(c *Config) {
				c.ForwardURL = "http://127.0.0.1:3000/in"
				c.ForwardKey = []byte(forwardKey)
				c.ForwardSchedule = []time.Duration{10 * time.Second}
				c.ForwardTimeout = 2 * time.Second
				c.ForwardConcurrency = 1
				c.ForwardOrdered = true
			},
		},
		{
			name: "forward secret from its file",
			env:  map[string]string{"NOUVELHOOK_FORWARD_SECRET_FILE": forwardSecretFile},
			want: func(c *Config) { c.ForwardKey = []byte(forwardKey) },
		},
		{
			name: "forward secret from its file flag",
			env:  map[string]string{"NOUVELHOOK_FORWARD_SECRET": badForwardSecret},
			args: []string{"--forward-secret-file", forwardSecretFile},
			want: func(c *Config) { c.ForwardKey = []byte(forwardKey) },
		},
		{
			name: "ordered without a concurrency sends one at a time",
			env:  map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "true"},
			want: func(c *Config) { c.ForwardOrdered = true; c.ForwardConcurrency = 1 },
		},
		{
			name: "ordered with concurrency 1 given",
			env:  map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "1", "NOUVELHOOK_FORWARD_CONCURRENCY": "1"},
			want: func(c *Config) { c.ForwardOrdered = true; c.ForwardConcurrency = 1 },
		},
		{
			name: "ordered flag false overrides the env",
			env:  map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "true"},
			args: []string{"--forward-ordered=false"},
			want: func(c *Config) {},
		},
		{
			name: "both listeners on port 0",
			env:  map[string]string{"NOUVELHOOK_LISTEN": "127.0.0.1:0", "NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:0"},
			want: func(c *Config) { c.Listen = "127.0.0.1:0"; c.AdminListen = "127.0.0.1:0" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.args, getenv(with(base, tt.env)), io.Discard)
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			want := Default()
			want.WebhookSecrets = []string{hookSecret}
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v,\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	badForwardFile := writeFile(t, badForwardSecret+"\n")
	secretFile := writeFile(t, fileSecret+"\n")
	emptyFile := writeFile(t, " \n")
	missing := filepath.Join(t.TempDir(), "missing")

	base := map[string]string{
		"NOUVEL_WEBHOOK_SECRET":  hookSecret,
		"NOUVEL_API_KEY":         apiKey,
		"NOUVELHOOK_ADMIN_TOKEN": adminToken,
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "no secret", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": ""},
			want: "NOUVEL_WEBHOOK_SECRET is required (or NOUVEL_WEBHOOK_SECRET_FILE)"},
		{name: "secret list of empties", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": " , ,"},
			want: "NOUVEL_WEBHOOK_SECRET is required (or NOUVEL_WEBHOOK_SECRET_FILE)"},
		{name: "secret and its file", env: map[string]string{"NOUVEL_WEBHOOK_SECRET_FILE": secretFile},
			want: "NOUVEL_WEBHOOK_SECRET and NOUVEL_WEBHOOK_SECRET_FILE are both set; use one"},
		{name: "api key and its file", env: map[string]string{"NOUVEL_API_KEY_FILE": secretFile},
			want: "NOUVEL_API_KEY and NOUVEL_API_KEY_FILE are both set; use one"},
		{name: "admin token and its file", env: map[string]string{"NOUVELHOOK_ADMIN_TOKEN_FILE": secretFile},
			want: "NOUVELHOOK_ADMIN_TOKEN and NOUVELHOOK_ADMIN_TOKEN_FILE are both set; use one"},
		{name: "secret flag and its file flag", args: []string{"--api-key", otherSecret, "--api-key-file", secretFile},
			want: "--api-key and --api-key-file are both set; use one"},
		{name: "missing file", env: map[string]string{"NOUVEL_API_KEY": "", "NOUVEL_API_KEY_FILE": missing},
			want: "NOUVEL_API_KEY_FILE: open " + missing + ": no such file or directory"},
		{name: "missing file flag", args: []string{"--admin-token-file", missing},
			want: "--admin-token-file: open " + missing + ": no such file or directory"},
		{name: "empty file", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": "", "NOUVEL_WEBHOOK_SECRET_FILE": emptyFile},
			want: "NOUVEL_WEBHOOK_SECRET_FILE: " + emptyFile + " is empty"},
		{name: "bad duration", env: map[string]string{"NOUVELHOOK_POLL_INTERVAL": "ten"},
			want: `NOUVELHOOK_POLL_INTERVAL: "ten" is not a duration (e.g. 10s)`},
		{name: "bad int", env: map[string]string{"NOUVELHOOK_POLL_BUDGET": "lots"},
			want: `NOUVELHOOK_POLL_BUDGET: "lots" is not a whole number`},
		{name: "bad size", env: map[string]string{"NOUVELHOOK_MAX_BODY": "big"},
			want: `NOUVELHOOK_MAX_BODY: "big" is not a size (e.g. 1MiB)`},
		{name: "bad level", env: map[string]string{"NOUVELHOOK_LOG_LEVEL": "loud"},
			want: `NOUVELHOOK_LOG_LEVEL: "loud" is not a log level (trace, debug, info, warn, error)`},
		{name: "numeric level out of range", env: map[string]string{"NOUVELHOOK_LOG_LEVEL": "42"},
			want: `NOUVELHOOK_LOG_LEVEL: "42" is not a log level (trace, debug, info, warn, error)`},
		{name: "bad flag value", args: []string{"--track-ttl", "forever"},
			want: `--track-ttl: "forever" is not a duration (e.g. 10s)`},
		{name: "empty flag value", args: []string{"--poll-interval="},
			want: `--poll-interval: "" is not a duration (e.g. 10s)`},
		{name: "unknown flag", args: []string{"--nope"},
			want: "flag provided but not defined: -nope"},
		{name: "flag without its value", args: []string{"--api-key"},
			want: "flag needs an argument: -api-key"},
		{name: "positional argument", args: []string{"--api-key=", otherSecret},
			want: "serve takes no arguments, got 1; see nouvelhook serve --help"},
		{name: "base URL not http", env: map[string]string{"NOUVEL_API_BASE_URL": "ftp://app.nouvel.ai"},
			want: "NOUVEL_API_BASE_URL must be an absolute http or https URL with a host"},
		{name: "base URL without scheme", env: map[string]string{"NOUVEL_API_BASE_URL": "app.nouvel.ai"},
			want: "NOUVEL_API_BASE_URL must be an absolute http or https URL with a host"},
		{name: "listen without port", env: map[string]string{"NOUVELHOOK_LISTEN": "8080"},
			want: `NOUVELHOOK_LISTEN ("8080") must be host:port with a port from 0 to 65535, like :8080`},
		{name: "listen with a named port", env: map[string]string{"NOUVELHOOK_LISTEN": ":http"},
			want: `NOUVELHOOK_LISTEN (":http") must be host:port with a port from 0 to 65535, like :8080`},
		{name: "admin listen port too big", env: map[string]string{"NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:65536"},
			want: `NOUVELHOOK_ADMIN_LISTEN ("127.0.0.1:65536") must be host:port with a port from 0 to 65535, like :8080`},
		{name: "same listeners", env: map[string]string{"NOUVELHOOK_LISTEN": "127.0.0.1:8081"},
			want: "NOUVELHOOK_ADMIN_LISTEN (127.0.0.1:8081) must differ from NOUVELHOOK_LISTEN (127.0.0.1:8081)"},
		{name: "admin port inside the wildcard listener", env: map[string]string{"NOUVELHOOK_LISTEN": ":8081"},
			want: "NOUVELHOOK_ADMIN_LISTEN (127.0.0.1:8081) must differ from NOUVELHOOK_LISTEN (:8081)"},
		{name: "path without slash", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "webhooks"},
			want: `NOUVELHOOK_WEBHOOK_PATH ("webhooks") must start with /`},
		{name: "path with space", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "/web hooks"},
			want: `NOUVELHOOK_WEBHOOK_PATH ("/web hooks") must be a plain path, without spaces, query, fragment, : or *`},
		{name: "path with query", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "/hook?x=1"},
			want: `NOUVELHOOK_WEBHOOK_PATH ("/hook?x=1") must be a plain path, without spaces, query, fragment, : or *`},
		{name: "path with a router wildcard", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "/hooks/*"},
			want: `NOUVELHOOK_WEBHOOK_PATH ("/hooks/*") must be a plain path, without spaces, query, fragment, : or *`},
		{name: "path with a router parameter", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "/hooks/:id"},
			want: `NOUVELHOOK_WEBHOOK_PATH ("/hooks/:id") must be a plain path, without spaces, query, fragment, : or *`},
		{name: "path is healthz", env: map[string]string{"NOUVELHOOK_WEBHOOK_PATH": "/healthz"},
			want: "NOUVELHOOK_WEBHOOK_PATH must not be /healthz, which the public listener serves itself"},
		{name: "admin off loopback without token",
			env:  map[string]string{"NOUVELHOOK_ADMIN_LISTEN": "0.0.0.0:8081", "NOUVELHOOK_ADMIN_TOKEN": ""},
			want: "NOUVELHOOK_ADMIN_TOKEN is required when NOUVELHOOK_ADMIN_LISTEN (0.0.0.0:8081) is not on loopback"},
		{name: "admin on all addresses without token",
			env:  map[string]string{"NOUVELHOOK_LISTEN": ":8080", "NOUVELHOOK_ADMIN_LISTEN": ":8081", "NOUVELHOOK_ADMIN_TOKEN": ""},
			want: "NOUVELHOOK_ADMIN_TOKEN is required when NOUVELHOOK_ADMIN_LISTEN (:8081) is not on loopback"},
		{name: "public URL over http", env: map[string]string{"NOUVELHOOK_PUBLIC_URL": "http://hooks.example.com"},
			want: "NOUVELHOOK_PUBLIC_URL must be an absolute https URL with a host, like https://hooks.example.com"},
		{name: "public URL on a private address", env: map[string]string{"NOUVELHOOK_PUBLIC_URL": "https://192.168.1.10"},
			want: "NOUVELHOOK_PUBLIC_URL must not be on a loopback, private or link-local address (192.168.1.10); Nouvel refuses it"},
		{name: "empty db", args: []string{"--db", ""},
			want: "NOUVELHOOK_DB must not be empty"},
		{name: "db and its file", env: map[string]string{"NOUVELHOOK_DB": pgURL, "NOUVELHOOK_DB_FILE": secretFile},
			want: "NOUVELHOOK_DB and NOUVELHOOK_DB_FILE are both set; use one"},
		{name: "db flag and its file flag", args: []string{"--db", pgURL, "--db-file", secretFile},
			want: "--db and --db-file are both set; use one"},
		{name: "missing db file", env: map[string]string{"NOUVELHOOK_DB_FILE": missing},
			want: "NOUVELHOOK_DB_FILE: open " + missing + ": no such file or directory"},
		{name: "empty db file", env: map[string]string{"NOUVELHOOK_DB_FILE": emptyFile},
			want: "NOUVELHOOK_DB_FILE: " + emptyFile + " is empty"},
		{name: "postgres URL without a host", env: map[string]string{"NOUVELHOOK_DB": "postgres://u:" + dbPassword + "@/jobs"},
			want: "NOUVELHOOK_DB (postgres://u:xxxxx@/jobs) has no host; give postgres://user:password@host:5432/dbname"},
		{name: "postgres URL without a database", env: map[string]string{"NOUVELHOOK_DB": "postgres://u:" + dbPassword + "@db:5432/"},
			want: "NOUVELHOOK_DB (postgres://u:xxxxx@db:5432/) has no database name; give postgres://user:password@host:5432/dbname"},
		{name: "postgres URL with its password in a parameter and no database",
			env:  map[string]string{"NOUVELHOOK_DB": "postgresql://db?password=" + dbPassword},
			want: "NOUVELHOOK_DB (postgresql://db?password=xxxxx) has no database name; give postgres://user:password@host:5432/dbname"},
		{name: "postgres URL with a slash in the password", env: map[string]string{"NOUVELHOOK_DB": "postgres://u:" + dbPassword + "/x@db/jobs"},
			want: "NOUVELHOOK_DB is not a valid postgres:// URL (postgres://user:password@host:5432/dbname, with special characters in the password percent-encoded)"},
		{name: "postgres URL with a bad escape", env: map[string]string{"NOUVELHOOK_DB": "postgres://u:" + dbPassword + "%zz@db/jobs"},
			want: "NOUVELHOOK_DB is not a valid postgres:// URL (postgres://user:password@host:5432/dbname, with special characters in the password percent-encoded)"},
		{name: "postgres URL in upper case", env: map[string]string{"NOUVELHOOK_DB": "POSTGRES://u:" + dbPassword + "@db/jobs"},
			want: "NOUVELHOOK_DB must spell its scheme in lower case, postgres://"},
		{name: "another database's URL", env: map[string]string{"NOUVELHOOK_DB": "mysql://u:" + dbPassword + "@db/jobs"},
			want: "NOUVELHOOK_DB is a mysql:// URL; give a SQLite file path or a postgres:// URL"},
		{name: "a key=value connection string", env: map[string]string{"NOUVELHOOK_DB": "host=db dbname=jobs password=" + dbPassword},
			want: "NOUVELHOOK_DB looks like a key=value connection string; give a postgres://user:password@host:5432/dbname URL or a SQLite file path"},
		{name: "bad db flag", args: []string{"--db", "postgres://u:" + dbPassword + "@:5432/jobs"},
			want: "NOUVELHOOK_DB (postgres://u:xxxxx@:5432/jobs) has no host; give postgres://user:password@host:5432/dbname"},
		{name: "poll budget 0", env: map[string]string{"NOUVELHOOK_POLL_BUDGET": "0"},
			want: "NOUVELHOOK_POLL_BUDGET must be between 1 and 60 requests a minute (the API key's limit), got 0"},
		{name: "poll budget 61", env: map[string]string{"NOUVELHOOK_POLL_BUDGET": "61"},
			want: "NOUVELHOOK_POLL_BUDGET must be between 1 and 60 requests a minute (the API key's limit), got 61"},
		{name: "poll interval under 1s", env: map[string]string{"NOUVELHOOK_POLL_INTERVAL": "500ms"},
			want: "NOUVELHOOK_POLL_INTERVAL must be at least 1s, got 500ms"},
		{name: "track ttl 0", env: map[string]string{"NOUVELHOOK_TRACK_TTL": "0s"},
			want: "NOUVELHOOK_TRACK_TTL must be more than 0, got 0s"},
		{name: "missed grace negative", env: map[string]string{"NOUVELHOOK_MISSED_GRACE": "-1s"},
			want: "NOUVELHOOK_MISSED_GRACE must not be negative, got -1s"},
		{name: "max body too small", env: map[string]string{"NOUVELHOOK_MAX_BODY": "512"},
			want: "NOUVELHOOK_MAX_BODY must be between 1KiB and 64MiB, got 512 bytes"},
		{name: "max body too big", env: map[string]string{"NOUVELHOOK_MAX_BODY": "65MiB"},
			want: "NOUVELHOOK_MAX_BODY must be between 1KiB and 64MiB, got 68157440 bytes"},
		{name: "max conns 0", env: map[string]string{"NOUVELHOOK_MAX_CONNS": "0"},
			want: "NOUVELHOOK_MAX_CONNS must be at least 1, got 0"},
		{name: "max conns not a number", env: map[string]string{"NOUVELHOOK_MAX_CONNS": "many"},
			want: `NOUVELHOOK_MAX_CONNS: "many" is not a whole number`},
		{name: "max conns past the open-file limit", args: []string{"--max-conns", "100000000"},
			want: fmt.Sprintf("NOUVELHOOK_MAX_CONNS (100000000) must leave 64 of the open-file limit (ulimit -n, %d) for the database and the admin listener: at most %d",
				openFileLimit(), openFileLimit()-64)},
		{name: "retain negative", env: map[string]string{"NOUVELHOOK_RETAIN": "-1d"},
			want: "NOUVELHOOK_RETAIN must not be negative, got -1d"},
		{name: "retain in weeks", env: map[string]string{"NOUVELHOOK_RETAIN": "2w"},
			want: `NOUVELHOOK_RETAIN: "2w" is not an age (e.g. 90d, 36h or 0)`},
		{name: "retain in fractional days", env: map[string]string{"NOUVELHOOK_RETAIN": "1.5d"},
			want: `NOUVELHOOK_RETAIN: "1.5d" is not an age (e.g. 90d, 36h or 0)`},
		{name: "log format", env: map[string]string{"NOUVELHOOK_LOG_FORMAT": "text"},
			want: `NOUVELHOOK_LOG_FORMAT must be json or console, got "text"`},
		{name: "forward URL without a scheme", env: map[string]string{"NOUVELHOOK_FORWARD_URL": appUser + ":" + appPassword + "@app.example.com/hooks"},
			want: "NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
		{name: "forward URL not http", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "ftp://" + appUser + ":" + appPassword + "@app.example.com/"},
			want: "NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
		{name: "forward URL without a host", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "https://" + appUser + ":" + appPassword + "@/hooks"},
			want: "NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
		{name: "forward URL relative", args: []string{"--forward-url", "/hooks?token=" + appToken},
			want: "NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
		{name: "forward URL unparsable", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "https://u:" + appPassword + "%zz@app.example.com/"},
			want: "NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
		{name: "forward schedule not durations", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "5s,soon"},
			want: `NOUVELHOOK_FORWARD_SCHEDULE: "5s,soon" is not a comma-separated list of durations (e.g. 5s,5m,30m)`},
		{name: "forward schedule with an empty step", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "5s,,5m"},
			want: `NOUVELHOOK_FORWARD_SCHEDULE: "5s,,5m" is not a comma-separated list of durations (e.g. 5s,5m,30m)`},
		{name: "forward schedule with a zero step", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "5s,0s"},
			want: `NOUVELHOOK_FORWARD_SCHEDULE must be a comma-separated list of positive durations (e.g. 5s,5m,30m), got "5s,0s"`},
		{name: "forward schedule with a negative step", args: []string{"--forward-schedule", "-1m"},
			want: `NOUVELHOOK_FORWARD_SCHEDULE must be a comma-separated list of positive durations (e.g. 5s,5m,30m), got "-1m"`},
		{name: "forward timeout 0", env: map[string]string{"NOUVELHOOK_FORWARD_TIMEOUT": "0s"},
			want: "NOUVELHOOK_FORWARD_TIMEOUT must be more than 0, got 0s"},
		{name: "forward timeout negative", args: []string{"--forward-timeout", "-5s"},
			want: "NOUVELHOOK_FORWARD_TIMEOUT must be more than 0, got -5s"},
		{name: "forward timeout not a duration", env: map[string]string{"NOUVELHOOK_FORWARD_TIMEOUT": "15"},
			want: `NOUVELHOOK_FORWARD_TIMEOUT: "15" is not a duration (e.g. 10s)`},
		{name: "forward concurrency 0", env: map[string]string{"NOUVELHOOK_FORWARD_CONCURRENCY": "0"},
			want: "NOUVELHOOK_FORWARD_CONCURRENCY must be at least 1, got 0"},
		{name: "forward concurrency not a number", env: map[string]string{"NOUVELHOOK_FORWARD_CONCURRENCY": "four"},
			want: `NOUVELHOOK_FORWARD_CONCURRENCY: "four" is not a whole number`},
		{name: "ordered with concurrency given above 1",
			env:  map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "true", "NOUVELHOOK_FORWARD_CONCURRENCY": "4"},
			want: "NOUVELHOOK_FORWARD_CONCURRENCY (4) must be 1 or unset with NOUVELHOOK_FORWARD_ORDERED=true, which sends one at a time"},
		{name: "ordered flag with concurrency flag above 1", args: []string{"--forward-ordered", "--forward-concurrency=2"},
			want: "NOUVELHOOK_FORWARD_CONCURRENCY (2) must be 1 or unset with NOUVELHOOK_FORWARD_ORDERED=true, which sends one at a time"},
		{name: "ordered not a boolean", env: map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "yes"},
			want: `NOUVELHOOK_FORWARD_ORDERED: "yes" is not true or false`},
		{name: "forward secret not base64", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": badForwardSecret},
			want: "NOUVELHOOK_FORWARD_SECRET: is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte"},
		{name: "forward secret without its prefix", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": "ZndkLVNFQ1JFVC03"},
			want: "NOUVELHOOK_FORWARD_SECRET: is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte"},
		{name: "forward secret of no bytes", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": "whsec_"},
			want: "NOUVELHOOK_FORWARD_SECRET: is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte"},
		{name: "forward secret flag not base64", args: []string{"--forward-secret", badForwardSecret},
			want: "--forward-secret: is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte"},
		{name: "forward secret file not base64", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET_FILE": badForwardFile},
			want: "NOUVELHOOK_FORWARD_SECRET: is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte"},
		{name: "forward secret and its file", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": forwardSecret, "NOUVELHOOK_FORWARD_SECRET_FILE": badForwardFile},
			want: "NOUVELHOOK_FORWARD_SECRET and NOUVELHOOK_FORWARD_SECRET_FILE are both set; use one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := Load(tt.args, getenv(with(base, tt.env)), &stderr)
			if err == nil {
				t.Fatalf("got no error and %+v, want %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got error %q, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q, want one line", err)
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("got %+v with the error, want the zero Config", got)
			}
			checkNoSecret(t, err.Error())
			checkNoSecret(t, stderr.String())
		})
	}
}

func TestLoadHelp(t *testing.T) {
	env := map[string]string{
		"NOUVEL_WEBHOOK_SECRET":     hookSecret,
		"NOUVEL_API_KEY":            apiKey,
		"NOUVELHOOK_ADMIN_TOKEN":    adminToken,
		"NOUVELHOOK_LISTEN":         ":9999",
		"NOUVELHOOK_DB":             pgURL,
		"NOUVELHOOK_FORWARD_URL":    appURL,
		"NOUVELHOOK_FORWARD_SECRET": forwardSecret,
	}
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := Load([]string{arg}, getenv(env), &stderr)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("got error %v, want flag.ErrHelp", err)
			}
			out := stderr.String()
			if !strings.HasPrefix(out, "Usage: nouvelhook serve [flags]\n") {
				t.Errorf("got usage starting %q, want the Usage line first", out)
			}
			checkNoSecret(t, out)
			if strings.Contains(out, ":9999") {
				t.Errorf("got an environment value in the usage, want only defaults:\n%s", out)
			}
			// Every variable of SPEC.md's table and every flag appear, with a default.
			for _, want := range []string{
				"NOUVEL_WEBHOOK_SECRET)", "NOUVEL_WEBHOOK_SECRET_FILE", "NOUVEL_API_KEY)", "NOUVEL_API_KEY_FILE",
				"NOUVEL_API_BASE_URL", "NOUVELHOOK_LISTEN", "NOUVELHOOK_WEBHOOK_PATH", "NOUVELHOOK_ADMIN_LISTEN",
				"NOUVELHOOK_ADMIN_TOKEN)", "NOUVELHOOK_ADMIN_TOKEN_FILE", "NOUVELHOOK_PUBLIC_URL", "NOUVELHOOK_DB",
				"NOUVELHOOK_POLL_BUDGET", "NOUVELHOOK_POLL_INTERVAL", "NOUVELHOOK_TRACK_TTL", "NOUVELHOOK_MISSED_GRACE",
				"NOUVELHOOK_MAX_BODY", "NOUVELHOOK_LOG_LEVEL", "NOUVELHOOK_LOG_FORMAT", "NOUVELHOOK_DB_FILE",
				"-webhook-secret secret", "-webhook-secret-file file", "-api-key key", "-api-key-file file",
				"-api-base-url URL", "-listen address", "-webhook-path path", "-admin-listen address",
				"-admin-token token", "-admin-token-file file", "-public-url URL", "-db path", "-db-file file",
				"-poll-budget requests", "-poll-interval gap", "-track-ttl duration", "-missed-grace wait",
				"-max-body size", "-log-level level", "-log-format format",
				"(default 127.0.0.1:8081)", "(default 10s)", "(default 1.0 MiB)", "(default info)", "(default nouvelhook.db)",
				"-forward-url URL", "NOUVELHOOK_FORWARD_URL)", "-forward-secret secret", "NOUVELHOOK_FORWARD_SECRET)",
				"-forward-secret-file file", "NOUVELHOOK_FORWARD_SECRET_FILE", "-forward-schedule waits", "NOUVELHOOK_FORWARD_SCHEDULE",
				"(default 5s,5m,30m,2h,5h,10h,10h)", "-forward-timeout duration", "(default 15s)", "NOUVELHOOK_FORWARD_TIMEOUT",
				"-forward-concurrency number", "(default 4)", "NOUVELHOOK_FORWARD_CONCURRENCY",
				"  --forward-ordered\n", "NOUVELHOOK_FORWARD_ORDERED",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("usage lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestCheckPublicURL(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" for accepted
	}{
		{"https://hooks.example.com", ""},
		{"https://hooks.example.com:8443/base/", ""},
		{"https://203.0.113.7", ""},
		{"https://[2001:db8::1]", ""},
		{"http://hooks.example.com", "must be an absolute https URL with a host, like https://hooks.example.com"},
		{"hooks.example.com", "must be an absolute https URL with a host, like https://hooks.example.com"},
		{"https://", "must be an absolute https URL with a host, like https://hooks.example.com"},
		{"https://:443", "must be an absolute https URL with a host, like https://hooks.example.com"},
		{"https://hooks.example.com/?a=1", "must not have a query or fragment"},
		{"https://hooks.example.com/#top", "must not have a query or fragment"},
		{"https://localhost", "must not be on localhost (localhost); Nouvel refuses it"},
		{"https://LOCALHOST.:8443", "must not be on localhost (localhost); Nouvel refuses it"},
		{"https://app.localhost", "must not be on localhost (app.localhost); Nouvel refuses it"},
		{"https://127.0.0.1", "must not be on a loopback, private or link-local address (127.0.0.1); Nouvel refuses it"},
		{"https://127.8.9.10", "must not be on a loopback, private or link-local address (127.8.9.10); Nouvel refuses it"},
		{"https://0.0.0.0", "must not be on a loopback, private or link-local address (0.0.0.0); Nouvel refuses it"},
		{"https://10.1.2.3", "must not be on a loopback, private or link-local address (10.1.2.3); Nouvel refuses it"},
		{"https://172.20.0.1", "must not be on a loopback, private or link-local address (172.20.0.1); Nouvel refuses it"},
		{"https://192.168.1.1", "must not be on a loopback, private or link-local address (192.168.1.1); Nouvel refuses it"},
		{"https://169.254.169.254", "must not be on a loopback, private or link-local address (169.254.169.254); Nouvel refuses it"},
		{"https://[::1]", "must not be on a loopback, private or link-local address (::1); Nouvel refuses it"},
		{"https://[::]", "must not be on a loopback, private or link-local address (::); Nouvel refuses it"},
		{"https://[fd00::1]", "must not be on a loopback, private or link-local address (fd00::1); Nouvel refuses it"},
		{"https://[fe80::1]", "must not be on a loopback, private or link-local address (fe80::1); Nouvel refuses it"},
		{"https://[::ffff:10.0.0.1]", "must not be on a loopback, private or link-local address (::ffff:10.0.0.1); Nouvel refuses it"},
	}
	for _, tt := range tests {
		got := ""
		if err := CheckPublicURL(tt.raw); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("CheckPublicURL(%q): got %q, want %q", tt.raw, got, tt.want)
		}
	}
	// 172.16.0.0/12 ends at 172.31.255.255.
	if err := CheckPublicURL("https://172.32.0.1"); err != nil {
		t.Errorf("CheckPublicURL(172.32.0.1): got %v, want none", err)
	}
}

func TestWebhookURL(t *testing.T) {
	tests := []struct {
		publicURL, path, want string
	}{
		{"", "/webhooks/nouvel", ""},
		{"https://hooks.example.com", "/webhooks/nouvel", "https://hooks.example.com/webhooks/nouvel"},
		{"https://hooks.example.com/", "/webhooks/nouvel", "https://hooks.example.com/webhooks/nouvel"},
		{"https://example.com/proxy//", "/in", "https://example.com/proxy/in"},
	}
	for _, tt := range tests {
		c := Config{PublicURL: tt.publicURL, WebhookPath: tt.path}
		if got := c.WebhookURL(); got != tt.want {
			t.Errorf("WebhookURL with %q and %q: got %q, want %q", tt.publicURL, tt.path, got, tt.want)
		}
	}
}

func TestMarshalZerologObject(t *testing.T) {
	c := Default()
	c.WebhookSecrets = []string{hookSecret, otherSecret}
	c.APIKey = apiKey
	c.AdminToken = adminToken
	c.ForwardURL = appURL
	c.ForwardKey = []byte(forwardKey)
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().EmbedObject(c).Msg("config")
	checkNoSecret(t, buf.String())

	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "info", "message": "config",
		"listen": ":8080", "webhook_path": "/webhooks/nouvel", "admin_listen": "127.0.0.1:8081",
		"admin_token_set": true, "public_url": "", "db": "nouvelhook.db", "db_backend": "sqlite",
		"api_base_url": "https://app.nouvel.ai", "reconciler": true, "webhook_secrets": 2.0,
		"poll_budget": 30.0, "poll_interval": "10s", "track_ttl": "24h0m0s", "missed_grace": "2m0s",
		"max_body": 1048576.0, "max_conns": 1024.0, "retain": "0", "log_level": "info", "log_format": "json",
		"forward_url": "https://app.example.com:8443/hooks/nouvel", "forward_secret_set": true,
		"forward_schedule": "5s,5m,30m,2h,5h,10h,10h", "forward_timeout": "15s", "forward_concurrency": 4.0,
		"forward_ordered": false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v,\nwant %v", got, want)
	}
}

func TestMarshalZerologObjectRedactsURLPassword(t *testing.T) {
	c := Default()
	c.APIBaseURL = "https://user:hunter2@proxy.example/nouvel"
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().EmbedObject(c).Msg("config")
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "user:xxxxx@proxy.example") {
		t.Errorf("got %s, want the password redacted", buf.String())
	}
}

func TestMarshalZerologObjectRedactsDBPassword(t *testing.T) {
	tests := []struct {
		db, wantDB, wantBackend string
	}{
		{pgURL, "postgres://nouvelhook:xxxxx@db.internal:5432/jobs?sslmode=require", "postgres"},
		{"postgresql://nouvelhook@db/jobs?password=" + dbPassword + "&sslmode=disable",
			"postgresql://nouvelhook@db/jobs?password=xxxxx&sslmode=disable", "postgres"},
		{"/var/lib/nouvelhook/jobs.db", "/var/lib/nouvelhook/jobs.db", "sqlite"},
	}
	for _, tt := range tests {
		c := Default()
		c.DBPath = tt.db
		var buf bytes.Buffer
		log := zerolog.New(&buf)
		log.Info().EmbedObject(c).Msg("config")
		checkNoSecret(t, buf.String())
		var got struct {
			DB      string `json:"db"`
			Backend string `json:"db_backend"`
		}
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.DB != tt.wantDB || got.Backend != tt.wantBackend {
			t.Errorf("logged %q: got db %q on %q, want %q on %q", tt.db, got.DB, got.Backend, tt.wantDB, tt.wantBackend)
		}
	}
}

func TestDBBackend(t *testing.T) {
	tests := []struct{ db, want string }{
		{"nouvelhook.db", BackendSQLite},
		{"/var/lib/nouvelhook/jobs.db", BackendSQLite},
		{"./postgres://x.db", BackendSQLite}, // a path, whatever it holds
		{"postgres.db", BackendSQLite},
		{"postgres://u:p@db/jobs", BackendPostgres},
		{"postgresql://db/jobs", BackendPostgres},
		{"Postgres://db/jobs", BackendPostgres}, // refused by CheckDB, but not a file either
		{"mysql://db/jobs", BackendSQLite},      // refused by CheckDB
	}
	for _, tt := range tests {
		if got := DBBackend(tt.db); got != tt.want {
			t.Errorf("DBBackend(%q): got %q, want %q", tt.db, got, tt.want)
		}
		if got := (Config{DBPath: tt.db}).DBBackend(); got != tt.want {
			t.Errorf("Config.DBBackend with %q: got %q, want %q", tt.db, got, tt.want)
		}
	}
}

func TestRedactDB(t *testing.T) {
	tests := []struct{ db, want string }{
		{"nouvelhook.db", "nouvelhook.db"},
		{pgURL, "postgres://nouvelhook:xxxxx@db.internal:5432/jobs?sslmode=require"},
		{"postgres://nouvelhook@db/jobs", "postgres://nouvelhook@db/jobs"},
		{"postgres://db/jobs?password=" + dbPassword, "postgres://db/jobs?password=xxxxx"},
		{"postgres://u@db/jobs?sslmode=verify-full&sslpassword=" + dbPassword, "postgres://u@db/jobs?sslmode=verify-full&sslpassword=xxxxx"},
		{"postgres://u:" + dbPassword + "/x@db/jobs", "(unparsable URL)"},
		{"host=db password=" + dbPassword, "(key=value connection string)"},
	}
	for _, tt := range tests {
		if got := RedactDB(tt.db); got != tt.want {
			t.Errorf("RedactDB(%q): got %q, want %q", tt.db, got, tt.want)
		}
	}
}

func TestEnvDB(t *testing.T) {
	dbFile := writeFile(t, pgURL+"\n")
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"default", nil, "nouvelhook.db", ""},
		{"a path", map[string]string{"NOUVELHOOK_DB": "/data/jobs.db"}, "/data/jobs.db", ""},
		{"a URL", map[string]string{"NOUVELHOOK_DB": pgURL}, pgURL, ""},
		{"a file", map[string]string{"NOUVELHOOK_DB_FILE": dbFile}, pgURL, ""},
		{"both", map[string]string{"NOUVELHOOK_DB": "x.db", "NOUVELHOOK_DB_FILE": dbFile}, "",
			"NOUVELHOOK_DB and NOUVELHOOK_DB_FILE are both set; use one"},
		{"a bad URL", map[string]string{"NOUVELHOOK_DB": "postgres://u:" + dbPassword + "@db/"}, "",
			"NOUVELHOOK_DB (postgres://u:xxxxx@db/) has no database name; give postgres://user:password@host:5432/dbname"},
	}
	for _, tt := range tests {
		got, err := EnvDB(getenv(tt.env))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.wantErr {
			t.Errorf("%s: got %q, %q; want %q, %q", tt.name, got, gotErr, tt.want, tt.wantErr)
		}
		checkNoSecret(t, gotErr)
	}
}

func TestForwardTarget(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", ""},
		{appURL, "https://app.example.com:8443/hooks/nouvel"},
		{"http://127.0.0.1:3000/in?", "http://127.0.0.1:3000/in"},
		{"https://" + appUser + "@app.example.com", "https://app.example.com"},
		{"https://u:" + appPassword + "%zz@app.example.com/", "(unparsable URL)"},
	}
	for _, tt := range tests {
		got := ForwardTarget(tt.raw)
		if got != tt.want {
			t.Errorf("ForwardTarget(%q): got %q, want %q", tt.raw, got, tt.want)
		}
		checkNoSecret(t, got)
	}
}

func TestValidateForward(t *testing.T) {
	// Validate refuses a Config that was not made by Load, too.
	base := Default()
	base.WebhookSecrets = []string{hookSecret}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"empty schedule", func(c *Config) { c.ForwardSchedule = nil },
			`NOUVELHOOK_FORWARD_SCHEDULE must be a comma-separated list of positive durations (e.g. 5s,5m,30m), got ""`},
		{"empty key", func(c *Config) { c.ForwardKey = []byte{} },
			"NOUVELHOOK_FORWARD_SECRET must hold a key of at least one byte"},
		{"ordered with the default concurrency", func(c *Config) { c.ForwardOrdered = true },
			"NOUVELHOOK_FORWARD_CONCURRENCY (4) must be 1 or unset with NOUVELHOOK_FORWARD_ORDERED=true, which sends one at a time"},
		{"forward URL with user info and no host", func(c *Config) { c.ForwardURL = "http://" + appUser + ":" + appPassword + "@:80/" },
			"NOUVELHOOK_FORWARD_URL must be an absolute http or https URL with a host"},
	}
	for _, tt := range tests {
		c := base
		tt.change(&c)
		err := c.Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
			continue
		}
		checkNoSecret(t, err.Error())
	}
	if err := base.Validate(); err != nil {
		t.Errorf("Default with a secret: got %v, want none", err)
	}
}
