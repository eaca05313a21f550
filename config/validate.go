package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Validate checks c and returns the first problem as one line that names the
// environment variable at fault (also when the value came from its flag) and
// never holds a secret.
func (c Config) Validate() error {
	if len(c.WebhookSecrets) == 0 || slices.Contains(c.WebhookSecrets, "") {
		return errors.New("NOUVEL_WEBHOOK_SECRET is required (or NOUVEL_WEBHOOK_SECRET_FILE)")
	}
	if err := checkHTTPURL(c.APIBaseURL); err != nil {
		return fmt.Errorf("NOUVEL_API_BASE_URL %w", err)
	}
	listenHost, listenPort, err := splitAddr("NOUVELHOOK_LISTEN", c.Listen)
	if err != nil {
		return err
	}
	adminHost, adminPort, err := splitAddr("NOUVELHOOK_ADMIN_LISTEN", c.AdminListen)
	if err != nil {
		return err
	}
	// Port 0 picks a free port, so two of them never clash.
	if listenPort == adminPort && listenPort != 0 &&
		(listenHost == adminHost || isWildcard(listenHost) || isWildcard(adminHost)) {
		return fmt.Errorf("NOUVELHOOK_ADMIN_LISTEN (%s) must differ from NOUVELHOOK_LISTEN (%s)", c.AdminListen, c.Listen)
	}
	switch p := c.WebhookPath; {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("NOUVELHOOK_WEBHOOK_PATH (%q) must start with /", p)
	case strings.ContainsAny(p, "?# \t\r\n:*"):
		return fmt.Errorf("NOUVELHOOK_WEBHOOK_PATH (%q) must be a plain path, without spaces, query, fragment, : or *", p)
	case p == "/healthz":
		return errors.New("NOUVELHOOK_WEBHOOK_PATH must not be /healthz, which the public listener serves itself")
	}
	if c.AdminToken == "" && !isLoopback(adminHost) {
		return fmt.Errorf("NOUVELHOOK_ADMIN_TOKEN is required when NOUVELHOOK_ADMIN_LISTEN (%s) is not on loopback", c.AdminListen)
	}
	if c.PublicURL != "" {
		if err := CheckPublicURL(c.PublicURL); err != nil {
			return fmt.Errorf("NOUVELHOOK_PUBLIC_URL %w", err)
		}
	}
	if err := CheckDB(c.DBPath); err != nil {
		return fmt.Errorf("NOUVELHOOK_DB %w", err)
	}
	if c.PollBudget < 1 || c.PollBudget > 60 {
		return fmt.Errorf("NOUVELHOOK_POLL_BUDGET must be between 1 and 60 requests a minute (the API key's limit), got %d", c.PollBudget)
	}
	if c.PollInterval < time.Second {
		return fmt.Errorf("NOUVELHOOK_POLL_INTERVAL must be at least 1s, got %s", c.PollInterval)
	}
	if c.TrackTTL <= 0 {
		return fmt.Errorf("NOUVELHOOK_TRACK_TTL must be more than 0, got %s", c.TrackTTL)
	}
	if c.MissedGrace < 0 {
		return fmt.Errorf("NOUVELHOOK_MISSED_GRACE must not be negative, got %s", c.MissedGrace)
	}
	if c.MaxBody < 1<<10 || c.MaxBody > 64<<20 {
		return fmt.Errorf("NOUVELHOOK_MAX_BODY must be between 1KiB and 64MiB, got %d bytes", c.MaxBody)
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("NOUVELHOOK_MAX_CONNS must be at least 1, got %d", c.MaxConns)
	}
	if limit := openFileLimit(); limit > 0 && uint64(c.MaxConns)+fdReserve > limit {
		return fmt.Errorf("NOUVELHOOK_MAX_CONNS (%d) must leave %d of the open-file limit (ulimit -n, %d) for the database and the admin listener: at most %d",
			c.MaxConns, fdReserve, limit, max(int64(limit)-fdReserve, 0))
	}
	if c.Retain < 0 {
		return fmt.Errorf("NOUVELHOOK_RETAIN must not be negative, got %s", age(c.Retain))
	}
	if !validLevel(c.LogLevel) {
		return fmt.Errorf("NOUVELHOOK_LOG_LEVEL (%d) is not a zerolog level", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return fmt.Errorf("NOUVELHOOK_LOG_FORMAT must be json or console, got %q", c.LogFormat)
	}
	return c.validateForward()
}

// validateForward checks the NOUVELHOOK_FORWARD_* settings, which are
// checked even when forwarding is off, so that a typo shows before the URL
// is set.
func (c Config) validateForward() error {
	if c.ForwardURL != "" {
		if err := checkHTTPURL(c.ForwardURL); err != nil {
			return fmt.Errorf("NOUVELHOOK_FORWARD_URL %w", err) // not quoted: its user info may hold a password
		}
	}
	if c.ForwardKey != nil && len(c.ForwardKey) == 0 {
		return errors.New("NOUVELHOOK_FORWARD_SECRET must hold a key of at least one byte")
	}
	if len(c.ForwardSchedule) == 0 || slices.ContainsFunc(c.ForwardSchedule, func(d time.Duration) bool { return d <= 0 }) {
		return fmt.Errorf("NOUVELHOOK_FORWARD_SCHEDULE must be a comma-separated list of positive durations (e.g. 5s,5m,30m), got %q", schedule(c.ForwardSchedule))
	}
	if c.ForwardTimeout <= 0 {
		return fmt.Errorf("NOUVELHOOK_FORWARD_TIMEOUT must be more than 0, got %s", c.ForwardTimeout)
	}
	if c.ForwardConcurrency < 1 {
		return fmt.Errorf("NOUVELHOOK_FORWARD_CONCURRENCY must be at least 1, got %d", c.ForwardConcurrency)
	}
	if c.ForwardOrdered && c.ForwardConcurrency > 1 {
		return fmt.Errorf("NOUVELHOOK_FORWARD_CONCURRENCY (%d) must be 1 or unset with NOUVELHOOK_FORWARD_ORDERED=true, which sends one at a time", c.ForwardConcurrency)
	}
	return nil
}

// fdReserve is how many open files NOUVELHOOK_MAX_CONNS must leave free:
// the database and its WAL, the admin listener's clients, and calls to
// Nouvel are not counted by the public listener's cap.
const fdReserve = 64

// CheckPublicURL returns an error when raw cannot be Nouvel's webhookUrl:
// it must be an absolute https URL without query or fragment, whose host is
// not localhost, a loopback, unspecified, private or link-local address,
// since Nouvel's generate endpoint refuses those with a 400. The error reads
// well after the name of the setting, as in "NOUVELHOOK_PUBLIC_URL must …".
func CheckPublicURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return errors.New("must be an absolute https URL with a host, like https://hooks.example.com")
	}
	if strings.ContainsAny(raw, "?#") {
		return errors.New("must not have a query or fragment")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("must not be on localhost (%s); Nouvel refuses it", host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() || a.IsPrivate() || a.IsLinkLocalUnicast() {
			return fmt.Errorf("must not be on a loopback, private or link-local address (%s); Nouvel refuses it", host)
		}
	}
	return nil
}

// WebhookURL returns the URL Nouvel should post to: PublicURL, without a
// trailing slash, then WebhookPath. It is "" when PublicURL is unset.
func (c Config) WebhookURL() string {
	if c.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(c.PublicURL, "/") + c.WebhookPath
}

// MarshalZerologObject logs the settings that are not secret; of the
// secrets it logs only whether, or how many, are set, and URLs without
// their passwords.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("listen", c.Listen).
		Str("webhook_path", c.WebhookPath).
		Str("admin_listen", c.AdminListen).
		Bool("admin_token_set", c.AdminToken != "").
		Str("public_url", c.PublicURL).
		Str("db", RedactDB(c.DBPath)).
		Str("db_backend", c.DBBackend()).
		Str("api_base_url", redactURL(c.APIBaseURL)).
		Bool("reconciler", c.APIKey != "").
		Int("webhook_secrets", len(c.WebhookSecrets)).
		Int("poll_budget", c.PollBudget).
		Str("poll_interval", c.PollInterval.String()).
		Str("track_ttl", c.TrackTTL.String()).
		Str("missed_grace", c.MissedGrace.String()).
		Int64("max_body", c.MaxBody).
		Int("max_conns", c.MaxConns).
		Str("retain", age(c.Retain).String()).
		Str("log_level", c.LogLevel.String()).
		Str("log_format", c.LogFormat).
		Str("forward_url", ForwardTarget(c.ForwardURL)).
		Bool("forward_secret_set", c.ForwardKey != nil).
		Str("forward_schedule", schedule(c.ForwardSchedule).String()).
		Str("forward_timeout", c.ForwardTimeout.String()).
		Int("forward_concurrency", c.ForwardConcurrency).
		Bool("forward_ordered", c.ForwardOrdered)
}

// ForwardTarget returns raw, a NOUVELHOOK_FORWARD_URL, fit for a log line,
// an error or an answer: without its user info, query or fragment, any of
// which may hold a credential. It is "" for "".
func ForwardTarget(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// checkHTTPURL returns an error, worded to follow a setting's name, when raw
// is not an absolute http or https URL with a host. It does not quote raw,
// which may hold credentials.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return errors.New("must be an absolute http or https URL with a host")
	}
	return nil
}

// splitAddr splits a listen address into host and port, with an error naming
// the variable when it is not host:port with a numeric port.
func splitAddr(name, addr string) (host string, port uint64, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err == nil {
		port, err = strconv.ParseUint(p, 10, 16)
	}
	if err != nil {
		return "", 0, fmt.Errorf("%s (%q) must be host:port with a port from 0 to 65535, like :8080", name, addr)
	}
	return host, port, nil
}

// isLoopback reports whether a listener on host is reachable from this
// machine only. An empty host listens everywhere.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// isWildcard reports whether a listener on host listens on every address.
func isWildcard(host string) bool {
	a, err := netip.ParseAddr(host)
	return host == "" || err == nil && a.IsUnspecified()
}

// redactURL hides a password in a URL's user info, for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
