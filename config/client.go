package config

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultAdminURL is where the client commands find the admin API when
// NOUVELHOOK_ADMIN_URL is unset: serve's default admin listener.
const DefaultAdminURL = "http://127.0.0.1:8081"

// Client is the configuration of the commands that talk to a running
// service's admin API (jobs, track, submit).
type Client struct {
	AdminURL   string // NOUVELHOOK_ADMIN_URL, without a trailing slash
	AdminToken string // NOUVELHOOK_ADMIN_TOKEN: sent as a bearer token when set
}

// LoadClient reads the client configuration from the environment. Its errors
// are one line naming the variable at fault and never hold the token.
func LoadClient(getenv func(string) string) (Client, error) {
	c := Client{AdminURL: DefaultAdminURL}
	if v := getenv("NOUVELHOOK_ADMIN_URL"); v != "" {
		c.AdminURL = v
	}
	if err := checkHTTPURL(c.AdminURL); err != nil {
		return Client{}, fmt.Errorf("NOUVELHOOK_ADMIN_URL %w", err)
	}
	c.AdminURL = strings.TrimRight(c.AdminURL, "/")
	token, err := envSecret(getenv, "NOUVELHOOK_ADMIN_TOKEN")
	if err != nil {
		return Client{}, err
	}
	c.AdminToken = token
	return c, nil
}

// LoadSigningSecret returns the secret `nouvelhook sign` signs with:
// flagValue when not empty, else the first entry of NOUVEL_WEBHOOK_SECRET (or
// of the file named by NOUVEL_WEBHOOK_SECRET_FILE).
// It fails when there is none, naming the flag and variables.
func LoadSigningSecret(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	v, err := envSecret(getenv, "NOUVEL_WEBHOOK_SECRET")
	if err != nil {
		return "", err
	}
	secrets := splitList(v)
	if len(secrets) == 0 {
		return "", errors.New("no signing secret: pass --secret or set NOUVEL_WEBHOOK_SECRET (or NOUVEL_WEBHOOK_SECRET_FILE)")
	}
	return secrets[0], nil
}
