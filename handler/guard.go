package handler

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// browserGuard keeps browser pages away from an admin listener that has no
// token: with no secret to present, the only thing that tells a request
// from a local client apart from one a web page made is where the browser
// says it comes from. In order:
//
//   - 421 when Host is not a loopback name or address, nor the admin
//     listener's own configured host (hostOK). A DNS-rebound page sends its
//     own name as Host, so it cannot read the job log.
//   - 403 when Origin is present and cross-site (originOK). Browsers send
//     Origin with every POST and every fetch that is not a plain navigation;
//     curl and the CLI send none.
//   - 415 for a POST (or any method other than GET, HEAD and OPTIONS) whose
//     Content-Type is not application/json. A cross-site form or a no-cors
//     fetch can only send text/plain, urlencoded or multipart without a
//     CORS preflight, which nouvelhook never grants.
//
// All three run before routing, so they cover every route, unknown ones
// included, and nothing has read the body or called Nouvel yet. /healthz
// skips the Host and Origin checks: it holds no data and has no effect, and
// probes reach it under many names.
//
// With a token set, only the 415 rule applies: a browser never adds an
// Authorization header by itself, and a page that cannot read the token
// cannot send it, so the token already closes cross-site use and DNS
// rebinding, while a Host check would refuse the names a token-protected
// listener on a pod or LAN address is reached by.
func browserGuard(adminHost string, tokenSet bool) echo.MiddlewareFunc {
	adminHost = normalHost(adminHost)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if !tokenSet && r.URL.Path != "/healthz" {
				if !hostOK(r.Host, adminHost) {
					return echo.NewHTTPError(http.StatusMisdirectedRequest,
						"Host must be a loopback name or address (localhost, 127.0.0.1, [::1]); set NOUVELHOOK_ADMIN_TOKEN to serve other names")
				}
				if o := r.Header.Get(echo.HeaderOrigin); o != "" && !originOK(o, r.Host) {
					return echo.NewHTTPError(http.StatusForbidden, "cross-site requests are refused")
				}
			}
			if !safeMethod(r.Method) && !isJSON(r.Header.Get(echo.HeaderContentType)) {
				return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			}
			return next(c)
		}
	}
}

// hostOK reports whether the Host header names this machine's loopback:
// localhost, an address in 127.0.0.0/8 or ::1 (bracketed), with or without
// a port, or the admin listener's configured host.
func hostOK(hostHeader, adminHost string) bool {
	h := normalHost(hostOnly(hostHeader))
	if h == "" {
		return false
	}
	return isLoopbackName(h) || h == adminHost
}

// originOK reports whether an Origin header is same-site for an admin
// listener reached as host. It is when the origin is an http or https URL
// whose host and port are the request's own Host, or whose host is a
// loopback name or address (any port: a page served from this machine is
// already inside the trust boundary). "null", other schemes, and anything
// else are cross-site.
func originOK(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	return isLoopbackName(normalHost(u.Hostname()))
}

// hostOnly strips the port from a Host header value, and the brackets from
// an IPv6 address.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// normalHost lowercases a host name and drops a trailing dot.
func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// isLoopbackName reports whether h (normalized, without port or brackets)
// is localhost or a loopback address.
func isLoopbackName(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// safeMethod reports whether method reads only, so it carries no body that
// needs a content type.
func safeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// isJSON reports whether a Content-Type header is application/json, with
// any parameters (such as charset).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == echo.MIMEApplicationJSON
}
