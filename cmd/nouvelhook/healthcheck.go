package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/nouvelhook/nouvelhook/config"
)

// healthTimeout is how long healthcheck waits for an answer by default:
// well under Docker's and kubelet's own probe timeouts.
const healthTimeout = 3 * time.Second

// runHealthcheck asks the local service's public listener for /healthz (or
// /readyz with --ready) and succeeds only on a 200. It prints nothing on
// success, so that a probe's log stays quiet; a failure is the usual one line
// on stderr and exit status 1.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", "healthcheck [--ready] [--listen ADDR] [--timeout D]\n\n"+
		"Exits 0 when the service on this machine answers its public listener's /healthz\n"+
		"(or /readyz with --ready) with 200, and 1 otherwise, for Docker HEALTHCHECK and\n"+
		"exec probes. The listener is NOUVELHOOK_LISTEN (default :8080); a wildcard host\n"+
		"is asked on loopback.", stderr)
	ready := fs.Bool("ready", false, "ask /readyz (can the service take webhooks now) instead of /healthz (is it alive)")
	listen := fs.String("listen", "", "the public listener's `address` (default: NOUVELHOOK_LISTEN, else :8080)")
	timeout := fs.Duration("timeout", healthTimeout, "give up after this `duration`")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageError("healthcheck: --timeout %s must be positive", *timeout)
	}
	addr, name := *listen, "--listen"
	if addr == "" {
		addr, name = getenv("NOUVELHOOK_LISTEN"), "NOUVELHOOK_LISTEN"
	}
	if addr == "" {
		addr = config.Default().Listen
	}
	base, err := localURL(addr)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("healthcheck: %s %w", name, err)}
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	return probe(ctx, base+path, *timeout)
}

// localURL is the base URL at which this machine reaches a listener on
// addr: a wildcard host (none, 0.0.0.0 or ::) is asked on 127.0.0.1.
func localURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("(%q) must be host:port with a fixed port, like :8080", addr)
	}
	// Go listens on both IPv4 and IPv6 for "::", and ::1 may be missing
	// where a container has IPv6 turned off, so 127.0.0.1 for every
	// wildcard.
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// probe GETs u and wants a 200 within timeout. Its error is one line with
// the URL and what came back, the start of the body included.
func probe(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// A Transport of its own: no keep-alive, since a probe runs once and
	// exits, and no HTTP_PROXY, which must not route a loopback probe.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", timeout)
		}
		return fmt.Errorf("healthcheck: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode != http.StatusOK {
		text := strings.Join(strings.Fields(string(body)), " ")
		if text == "" {
			text = http.StatusText(resp.StatusCode)
		}
		return fmt.Errorf("healthcheck: GET %s: %d %s", u, resp.StatusCode, text)
	}
	return nil
}
