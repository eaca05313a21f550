package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/store"
)

// adminTimeout bounds one admin API request. It is well above maxPoll, the
// longest long-poll the CLI asks for, so a wait is never cut short.
const adminTimeout = 60 * time.Second

// maxBody bounds what the CLI reads into memory: an admin API answer, or a
// body to sign.
const maxBody = 64 << 20

// adminClient talks to a running service's admin API.
type adminClient struct {
	base  string // NOUVELHOOK_ADMIN_URL, no trailing slash
	token string // sent as a bearer token when not empty
	http  *http.Client
}

// newAdminClient reads NOUVELHOOK_ADMIN_URL and NOUVELHOOK_ADMIN_TOKEN(_FILE).
// A bad setting is exit status 2, like serve's.
func newAdminClient(getenv func(string) string) (*adminClient, error) {
	cfg, err := config.LoadClient(getenv)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return &adminClient{base: cfg.AdminURL, token: cfg.AdminToken, http: &http.Client{Timeout: adminTimeout}}, nil
}

// apiError is an answer from the admin API outside 2xx.
type apiError struct {
	status int
	text   string
}

func (e *apiError) Error() string { return e.text }

// isNotFound reports whether err is the admin API's 404.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == http.StatusNotFound
}

func (c *adminClient) get(ctx context.Context, path string, q url.Values, out any) error {
	_, err := c.do(ctx, http.MethodGet, path, q, nil, out)
	return err
}

// post sends in as JSON and returns the answer's status.
func (c *adminClient) post(ctx context.Context, path string, in, out any) (int, error) {
	return c.do(ctx, http.MethodPost, path, nil, in, out)
}

// do sends one request and decodes a 2xx JSON answer into out. Its errors
// are one line naming the admin URL, and the API's own {"error"} text.
func (c *adminClient) do(ctx context.Context, method, path string, q url.Values, in, out any) (int, error) {
	req, err := c.newRequest(ctx, method, path, q, in)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, c.transportError(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, c.apiError(method, path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, fmt.Errorf("admin API at %s: %s %s: the answer is not the expected JSON: %v",
			c.base, method, path, err)
	}
	return resp.StatusCode, nil
}

func (c *adminClient) newRequest(ctx context.Context, method, path string, q url.Values, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *adminClient) transportError(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the admin API at %s (is nouvelhook serve running?)", c.base)
	}
	// A *url.Error repeats the method and URL, query included; the base
	// URL is enough to say where.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("admin API at %s: %w", c.base, err)
}

func (c *adminClient) apiError(method, path string, status int, body []byte) error {
	var ans struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &ans) != nil || ans.Error == "" {
		ans.Error = http.StatusText(status)
	}
	text := fmt.Sprintf("admin API at %s: %s %s: %d %s", c.base, method, path, status, ans.Error)
	// A 401 of the admin API's own is about the token; one passed back
	// from Nouvel ("Nouvel: …") is about the API key and is shown as is.
	if status == http.StatusUnauthorized && !strings.HasPrefix(ans.Error, "Nouvel:") {
		hint := "set NOUVELHOOK_ADMIN_TOKEN (or NOUVELHOOK_ADMIN_TOKEN_FILE) to the service's admin token"
		if c.token != "" {
			hint = "the service refused NOUVELHOOK_ADMIN_TOKEN; check it matches the service's"
		}
		text = fmt.Sprintf("admin API at %s answered 401 (%s): %s", c.base, ans.Error, hint)
	}
	return &apiError{status: status, text: text}
}

// job gets one job with its deliveries. With wait > 0 the service holds the
// request until the job is terminal or wait has passed.
func (c *adminClient) job(ctx context.Context, id string, wait time.Duration) (store.Job, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var j store.Job
	err := c.get(ctx, "/v1/jobs/"+url.PathEscape(id), q, &j)
	return j, err
}

// listJobs gets up to limit jobs matching q, newest first, following
// nextCursor in pages of at most pageSize. next is the cursor of the jobs
// after these, "" when there are none.
func (c *adminClient) listJobs(ctx context.Context, q url.Values, limit, pageSize int) (jobs []store.Job, next string, err error) {
	return listPages[store.Job](ctx, c, "/v1/jobs", "jobs", q, limit, pageSize)
}

// listPages gets up to limit items of a paged list at path, whose answer is
// {key:[…],"nextCursor":"…"}, following nextCursor in pages of at most
// pageSize. next is the cursor of the items after these, "" when there are
// none.
func listPages[T any](ctx context.Context, c *adminClient, path, key string, q url.Values, limit, pageSize int) (items []T, next string, err error) {
	items = []T{}
	for len(items) < limit {
		q.Set("limit", strconv.Itoa(min(pageSize, limit-len(items))))
		var page map[string]json.RawMessage
		if err := c.get(ctx, path, q, &page); err != nil {
			return nil, "", err
		}
		var got []T
		next = ""
		if err := json.Unmarshal(page[key], &got); err != nil || json.Unmarshal(page["nextCursor"], &next) != nil {
			return nil, "", fmt.Errorf("admin API at %s: GET %s: the answer is not {%q:[…],\"nextCursor\":\"…\"}", c.base, path, key)
		}
		items = append(items, got...)
		if next == "" || len(got) == 0 {
			break
		}
		q.Set("cursor", next)
	}
	return items, next, nil
}
