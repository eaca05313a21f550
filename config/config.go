// Package config reads nouvelhook's settings from the environment and the
// command line, and checks them before anything listens.
package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
)

// Config is the configuration of `nouvelhook serve`. Each field has an
// environment variable and a serve flag; see Load.
type Config struct {
	WebhookSecrets []string // NOUVEL_WEBHOOK_SECRET: any of them verifies a delivery
	APIKey         string   // NOUVEL_API_KEY: empty disables the reconciler
	APIBaseURL     string   // NOUVEL_API_BASE_URL

	Listen      string // NOUVELHOOK_LISTEN
	WebhookPath string // NOUVELHOOK_WEBHOOK_PATH
	AdminListen string // NOUVELHOOK_ADMIN_LISTEN
	AdminToken  string // NOUVELHOOK_ADMIN_TOKEN: empty means the admin API is open
	PublicURL   string // NOUVELHOOK_PUBLIC_URL: empty means submit sends no webhookUrl
	DBPath      string // NOUVELHOOK_DB

	PollBudget   int           // NOUVELHOOK_POLL_BUDGET: requests per minute
	PollInterval time.Duration // NOUVELHOOK_POLL_INTERVAL
	TrackTTL     time.Duration // NOUVELHOOK_TRACK_TTL
	MissedGrace  time.Duration // NOUVELHOOK_MISSED_GRACE
	MaxBody      int64         // NOUVELHOOK_MAX_BODY, in bytes
	MaxConns     int           // NOUVELHOOK_MAX_CONNS: open connections on the public listener
	Retain       time.Duration // NOUVELHOOK_RETAIN: 0 keeps every job

	LogLevel  zerolog.Level // NOUVELHOOK_LOG_LEVEL
	LogFormat string        // NOUVELHOOK_LOG_FORMAT: "json" or "console"

	ForwardURL         string          // NOUVELHOOK_FORWARD_URL: empty turns forwarding off
	ForwardKey         []byte          // NOUVELHOOK_FORWARD_SECRET, decoded: nil sends no Standard Webhooks headers
	ForwardSchedule    []time.Duration // NOUVELHOOK_FORWARD_SCHEDULE: the waits before each retry
	ForwardTimeout     time.Duration   // NOUVELHOOK_FORWARD_TIMEOUT
	ForwardConcurrency int             // NOUVELHOOK_FORWARD_CONCURRENCY: 1 whenever ForwardOrdered, unless set above it (refused)
	ForwardOrdered     bool            // NOUVELHOOK_FORWARD_ORDERED
}

// Default returns the configuration used where neither an environment
// variable nor a flag says otherwise. It has no webhook secret, so it does
// not pass Validate on its own.
func Default() Config {
	return Config{
		APIBaseURL:   "https://app.nouvel.ai",
		Listen:       ":8080",
		WebhookPath:  "/webhooks/nouvel",
		AdminListen:  "127.0.0.1:8081",
		DBPath:       "nouvelhook.db",
		PollBudget:   30,
		PollInterval: 10 * time.Second,
		TrackTTL:     24 * time.Hour,
		MissedGrace:  2 * time.Minute,
		MaxBody:      1 << 20, // 1MiB
		MaxConns:     1024,
		LogLevel:     zerolog.InfoLevel,
		LogFormat:    "json",

		ForwardSchedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
			2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour},
		ForwardTimeout:     15 * time.Second,
		ForwardConcurrency: 4,
	}
}

// Load returns the serve configuration: Default, then the environment read
// through getenv (an empty variable counts as unset), then the flags in args,
// each of which wins over its variable only when given. Flag errors and usage
// go to stderr; --help returns flag.ErrHelp. Every other error is one line
// naming the variable or flag at fault, and never holds a secret.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	// A bad flag's error is the caller's to print, once; only usage goes to
	// stderr, with flags spelt "--name" as README spells them.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nouvelhook serve [flags]\n\n"+
			"Runs the webhook receiver, the reconciler and the admin API.\n"+
			"Each flag overrides the environment variable named in its text.\n\nFlags:\n")
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprint(stderr, strings.ReplaceAll("\n"+b.String(), "\n  -", "\n  --")[1:])
	}
	for _, s := range settings() {
		// The default shown by --help comes from Default, never from the
		// environment, so that help cannot print a secret.
		def := text("")
		if s.kind != secret {
			def = text(format(s.field(&c)))
		}
		usage := s.usage + " (env " + s.env + ")"
		switch s.kind {
		case secret:
			usage += "; a flag's value shows in ps, so prefer the env or --" + s.flag + "-file"
		case credential:
			usage += "; a flag's value shows in ps, so give one with a password in the env or --" + s.flag + "-file"
		}
		if _, ok := s.field(&c).(*bool); ok {
			fs.Var((*boolText)(&def), s.flag, usage)
		} else {
			fs.Var(&def, s.flag, usage)
		}
		if s.kind.fromFile() {
			fs.Var(new(text), s.flag+"-file", "read --"+s.flag+" from `file` (env "+s.env+"_FILE)")
		}
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		// The argument is not echoed: it may be a secret that lost its flag.
		return Config{}, fmt.Errorf("serve takes no arguments, got %d; see nouvelhook serve --help", fs.NArg())
	}
	given := make(map[string]string)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	set := make(map[string]bool)
	for _, s := range settings() {
		ok, err := s.apply(&c, getenv, given)
		if err != nil {
			return Config{}, err
		}
		set[s.env] = ok
	}
	// Ordered forwarding sends one at a time, so the default concurrency
	// does not apply to it; one set explicitly above 1 is refused by Validate.
	if c.ForwardOrdered && !set["NOUVELHOOK_FORWARD_CONCURRENCY"] {
		c.ForwardConcurrency = 1
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// setting ties a Config field to its environment variable and serve flag.
type setting struct {
	env, flag string
	usage     string // a `word` in it names the flag's argument in --help
	kind      kind
	field     func(*Config) any // a pointer to the field
}

// kind says how a setting's value is kept from showing.
type kind int

const (
	plain kind = iota
	// secret settings also come from a file (env+"_FILE", --flag-file), and
	// their value never appears in --help or an error.
	secret
	// credential settings may hold a secret, as a URL holds its password,
	// so they also come from a file; their default shows in --help, and
	// they show elsewhere only redacted.
	credential
)

// fromFile reports whether the setting also has a _FILE form.
func (k kind) fromFile() bool { return k == secret || k == credential }

func settings() []setting {
	return []setting{
		{"NOUVEL_WEBHOOK_SECRET", "webhook-secret", "signing `secret`, required; a comma-separated list accepts any of them", secret,
			func(c *Config) any { return &c.WebhookSecrets }},
		{"NOUVEL_API_KEY", "api-key", "Nouvel API `key`; enables the reconciler", secret,
			func(c *Config) any { return &c.APIKey }},
		{"NOUVEL_API_BASE_URL", "api-base-url", "Nouvel's API root `URL`", plain,
			func(c *Config) any { return &c.APIBaseURL }},
		{"NOUVELHOOK_LISTEN", "listen", "public listener `address`: the webhook path and /healthz", plain,
			func(c *Config) any { return &c.Listen }},
		{"NOUVELHOOK_WEBHOOK_PATH", "webhook-path", "the `path` Nouvel posts to", plain,
			func(c *Config) any { return &c.WebhookPath }},
		{"NOUVELHOOK_ADMIN_LISTEN", "admin-listen", "admin listener `address`", plain,
			func(c *Config) any { return &c.AdminListen }},
		{"NOUVELHOOK_ADMIN_TOKEN", "admin-token", "bearer `token` for the admin API; required off loopback", secret,
			func(c *Config) any { return &c.AdminToken }},
		{"NOUVELHOOK_PUBLIC_URL", "public-url", "this receiver's public https base `URL`, for submit's webhookUrl", plain,
			func(c *Config) any { return &c.PublicURL }},
		{"NOUVELHOOK_DB", "db", "the log: a SQLite file `path`, or a postgres:// URL", credential,
			func(c *Config) any { return &c.DBPath }},
		{"NOUVELHOOK_POLL_BUDGET", "poll-budget", "Nouvel `requests` per minute the reconciler may spend, 1 to 60", plain,
			func(c *Config) any { return &c.PollBudget }},
		{"NOUVELHOOK_POLL_INTERVAL", "poll-interval", "first poll `gap` for a running job", plain,
			func(c *Config) any { return &c.PollInterval }},
		{"NOUVELHOOK_TRACK_TTL", "track-ttl", "stop polling a job not ended after this `duration`", plain,
			func(c *Config) any { return &c.TrackTTL }},
		{"NOUVELHOOK_MISSED_GRACE", "missed-grace", "`wait` after a poll sees a job end before its webhook counts as missed", plain,
			func(c *Config) any { return &c.MissedGrace }},
		{"NOUVELHOOK_MAX_BODY", "max-body", "largest webhook body `size`; larger gets 413", plain,
			func(c *Config) any { return &c.MaxBody }},
		{"NOUVELHOOK_MAX_CONNS", "max-conns", "open `connections` the public listener serves at once; more wait", plain,
			func(c *Config) any { return &c.MaxConns }},
		{"NOUVELHOOK_RETAIN", "retain", "delete jobs that ended longer ago than this `age` (e.g. 90d, 720h); 0 keeps all", plain,
			func(c *Config) any { return (*age)(&c.Retain) }},
		{"NOUVELHOOK_LOG_LEVEL", "log-level", "log `level`: trace, debug, info, warn, error", plain,
			func(c *Config) any { return &c.LogLevel }},
		{"NOUVELHOOK_LOG_FORMAT", "log-format", "log `format`: json or console", plain,
			func(c *Config) any { return &c.LogFormat }},
		{"NOUVELHOOK_FORWARD_URL", "forward-url", "the app's http(s) `URL`; when set, every job that ends is POSTed to it", plain,
			func(c *Config) any { return &c.ForwardURL }},
		{"NOUVELHOOK_FORWARD_SECRET", "forward-secret", "Standard Webhooks signing `secret` for forwards, whsec_ and base64", secret,
			func(c *Config) any { return (*signingKey)(&c.ForwardKey) }},
		{"NOUVELHOOK_FORWARD_SCHEDULE", "forward-schedule", "comma-separated `waits` between a forward's attempts; its length is the number of retries", plain,
			func(c *Config) any { return (*schedule)(&c.ForwardSchedule) }},
		{"NOUVELHOOK_FORWARD_TIMEOUT", "forward-timeout", "a forward with no 2xx within this `duration` has failed", plain,
			func(c *Config) any { return &c.ForwardTimeout }},
		{"NOUVELHOOK_FORWARD_CONCURRENCY", "forward-concurrency", "`number` of forwards in flight at once; ordered forwarding is one at a time", plain,
			func(c *Config) any { return &c.ForwardConcurrency }},
		{"NOUVELHOOK_FORWARD_ORDERED", "forward-ordered", "forward strictly in seq order, one at a time; a failing job holds the ones after it", plain,
			func(c *Config) any { return &c.ForwardOrdered }},
	}
}

// apply sets the field from its flag when given, else from its environment
// variable when set, and reports whether either did. The value and file
// forms of a secret or a credential count as one source, so a flag of either
// form overrides both environment forms.
func (s setting) apply(c *Config, getenv func(string) string, given map[string]string) (bool, error) {
	name, fileName := s.env, s.env+"_FILE"
	v, file := getenv(name), ""
	if s.kind.fromFile() {
		file = getenv(fileName)
	}
	fv, fromFlag := given[s.flag]
	ff, fromFileFlag := given[s.flag+"-file"]
	if fromFlag || fromFileFlag {
		name, fileName = "--"+s.flag, "--"+s.flag+"-file"
		v, file = fv, ff
	}
	if s.kind.fromFile() {
		var err error
		if v, err = readSecret(v, file, name, fileName); err != nil {
			return false, err
		}
	}
	if v == "" && !fromFlag {
		return false, nil
	}
	if err := parse(s.field(c), v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

// parse sets *field from v. Its errors quote v, so it must never fail for a
// secret or a credential, except for a signingKey, whose error does not.
func parse(field any, v string) error {
	switch p := field.(type) {
	case *string:
		*p = v
	case *[]string:
		*p = splitList(v)
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 10s)", v)
		}
		*p = d
	case *age:
		a, err := parseAge(v)
		if err != nil {
			return fmt.Errorf("%q is not an age (e.g. 90d, 36h or 0)", v)
		}
		*p = a
	case *int64: // the only int64 is a size in bytes
		n, err := humanize.ParseBytes(v)
		if err != nil || n > math.MaxInt64 {
			return fmt.Errorf("%q is not a size (e.g. 1MiB)", v)
		}
		*p = int64(n)
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p = b
	case *schedule:
		var waits schedule
		for _, w := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(w))
			if err != nil {
				return fmt.Errorf("%q is not a comma-separated list of durations (e.g. 5s,5m,30m)", v)
			}
			waits = append(waits, d)
		}
		*p = waits
	case *signingKey:
		k, err := parseSigningKey(v)
		if err != nil {
			return err
		}
		*p = k
	case *zerolog.Level:
		l, err := zerolog.ParseLevel(v)
		if err != nil || !validLevel(l) {
			return fmt.Errorf("%q is not a log level (trace, debug, info, warn, error)", v)
		}
		*p = l
	default:
		panic(fmt.Sprintf("config: no parser for %T", field))
	}
	return nil
}

// age is a duration that can also be written in days, as "90d", for
// settings that are naturally long.
type age time.Duration

// String writes 0 as 0, whole days as days, and anything else as a Go
// duration.
func (a age) String() string {
	d := time.Duration(a)
	if d == 0 {
		return "0"
	}
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// parseAge reads "0", a Go duration ("36h") or a whole number of days
// ("90d"); negative ages are left to Validate.
func parseAge(v string) (age, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days > math.MaxInt64/int64(24*time.Hour) || days < -math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("%q is not a whole number of days", v)
		}
		return age(time.Duration(days) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(v)
	return age(d), err
}

// schedule is a list of waits, written as a comma-separated list of
// durations, each as short as it goes: "5s,5m,2h".
type schedule []time.Duration

// String writes the waits as parse reads them.
func (s schedule) String() string {
	out := make([]string, len(s))
	for i, d := range s {
		out[i] = shortDuration(d)
	}
	return strings.Join(out, ",")
}

// shortDuration writes d as time.Duration does, without its zero minutes
// and seconds: 5m, not 5m0s; 2h, not 2h0m0s.
func shortDuration(d time.Duration) string {
	v := d.String()
	if w, ok := strings.CutSuffix(v, "m0s"); ok {
		v = w + "m"
	}
	if w, ok := strings.CutSuffix(v, "h0m"); ok {
		v = w + "h"
	}
	return v
}

// signingKey is a Standard Webhooks signing key, written "whsec_" and the
// key in standard base64.
type signingKey []byte

// parseSigningKey decodes a "whsec_…" secret. Its error does not quote v,
// which is a secret.
func parseSigningKey(v string) (signingKey, error) {
	b64, ok := strings.CutPrefix(v, "whsec_")
	k, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(k) == 0 {
		return nil, errors.New("is not a Standard Webhooks secret: want whsec_ and then standard base64 of at least one byte")
	}
	return k, nil
}

// format is the inverse of parse, for the defaults shown by --help.
func format(field any) string {
	if p, ok := field.(*int64); ok {
		return humanize.IBytes(uint64(*p))
	}
	return fmt.Sprint(reflect.ValueOf(field).Elem().Interface())
}

// text is a flag.Value that keeps its argument as given, so that flags and
// environment variables share one parser and one kind of error.
type text string

func (t *text) String() string     { return string(*t) }
func (t *text) Set(v string) error { *t = text(v); return nil }

// boolText is a text that the flag package treats as a boolean flag, so
// that "--forward-ordered" alone means "--forward-ordered=true".
type boolText text

func (t *boolText) String() string     { return string(*t) }
func (t *boolText) Set(v string) error { *t = boolText(v); return nil }
func (t *boolText) IsBoolFlag() bool   { return true }

// readSecret returns value, or the content of the file named by file with
// trailing white space removed. name and fileName say where the two came
// from, for errors, which hold the file's path but never its content.
func readSecret(value, file, name, fileName string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s and %s are both set; use one", name, fileName)
	case file == "":
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileName, err) // an *fs.PathError names the path
	}
	v := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty", fileName, file)
	}
	return v, nil
}

// envSecret reads the secret in the environment variable env, or in the file
// named by env+"_FILE".
func envSecret(getenv func(string) string, env string) (string, error) {
	return readSecret(getenv(env), getenv(env+"_FILE"), env, env+"_FILE")
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty entries.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// validLevel reports whether l is one of zerolog's named levels.
func validLevel(l zerolog.Level) bool {
	return l >= zerolog.TraceLevel && l <= zerolog.PanicLevel || l == zerolog.Disabled
}
