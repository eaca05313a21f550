package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve refuses bad forwarding settings before it opens the log or
// listens: exit status 2 and one line on stderr that names the variable
// (the flag, for a flag's value that does not parse) and holds no secret.
func TestServeRefusesBadForwardSettings(t *testing.T) {
	dir := t.TempDir()
	badSecretFile := filepath.Join(dir, "forward-secret")
	if err := os.WriteFile(badSecretFile, []byte("whsec_not*base64-hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		want   string // the line names this
		secret string // and must not hold this
	}{
		{name: "url scheme", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "ftp://app.internal/hooks"}, want: "NOUVELHOOK_FORWARD_URL"},
		{name: "url relative", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "/webhooks/nouvel"}, want: "NOUVELHOOK_FORWARD_URL"},
		{name: "url without host", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "http:///webhooks/nouvel"}, want: "NOUVELHOOK_FORWARD_URL"},
		{name: "url password", env: map[string]string{"NOUVELHOOK_FORWARD_URL": "gopher://app:pw-hunter2@app.internal/x"},
			want: "NOUVELHOOK_FORWARD_URL", secret: "pw-hunter2"},
		// A flag's value is checked as its variable's.
		{name: "url flag", args: []string{"--forward-url", "localhost:3000"}, want: "NOUVELHOOK_FORWARD_URL"},
		{name: "timeout flag", args: []string{"--forward-timeout", "soon"}, want: "--forward-timeout"},
		{name: "schedule negative", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "5s,-1m"}, want: "NOUVELHOOK_FORWARD_SCHEDULE"},
		{name: "schedule empty step", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "5s,,1m"}, want: "NOUVELHOOK_FORWARD_SCHEDULE"},
		{name: "schedule zero", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "0s"}, want: "NOUVELHOOK_FORWARD_SCHEDULE"},
		{name: "schedule words", env: map[string]string{"NOUVELHOOK_FORWARD_SCHEDULE": "soon"}, want: "NOUVELHOOK_FORWARD_SCHEDULE"},
		{name: "timeout zero", env: map[string]string{"NOUVELHOOK_FORWARD_TIMEOUT": "0s"}, want: "NOUVELHOOK_FORWARD_TIMEOUT"},
		{name: "timeout negative", env: map[string]string{"NOUVELHOOK_FORWARD_TIMEOUT": "-5s"}, want: "NOUVELHOOK_FORWARD_TIMEOUT"},
		{name: "concurrency zero", env: map[string]string{"NOUVELHOOK_FORWARD_CONCURRENCY": "0"}, want: "NOUVELHOOK_FORWARD_CONCURRENCY"},
		{name: "concurrency words", env: map[string]string{"NOUVELHOOK_FORWARD_CONCURRENCY": "many"}, want: "NOUVELHOOK_FORWARD_CONCURRENCY"},
		{name: "ordered with concurrency", env: map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "true", "NOUVELHOOK_FORWARD_CONCURRENCY": "4"},
			want: "NOUVELHOOK_FORWARD_CONCURRENCY"},
		{name: "ordered not a bool", env: map[string]string{"NOUVELHOOK_FORWARD_ORDERED": "sometimes"}, want: "NOUVELHOOK_FORWARD_ORDERED"},
		{name: "secret prefix", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": "hunter2-not-whsec"},
			want: "NOUVELHOOK_FORWARD_SECRET", secret: "hunter2"},
		{name: "secret empty key", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": "whsec_"}, want: "NOUVELHOOK_FORWARD_SECRET"},
		{name: "secret base64", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET": "whsec_hunter2!!"},
			want: "NOUVELHOOK_FORWARD_SECRET", secret: "hunter2"},
		{name: "secret file", env: map[string]string{"NOUVELHOOK_FORWARD_SECRET_FILE": badSecretFile},
			want: "NOUVELHOOK_FORWARD_SECRET", secret: "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "nouvelhook.db")
			env := map[string]string{
				"NOUVEL_WEBHOOK_SECRET":   testSecret,
				"NOUVELHOOK_LISTEN":       "127.0.0.1:0",
				"NOUVELHOOK_ADMIN_LISTEN": "127.0.0.1:0",
				"NOUVELHOOK_DB":           db,
				// A valid URL, so that each case fails on its own setting.
				"NOUVELHOOK_FORWARD_URL": "http://127.0.0.1:3000/webhooks/nouvel",
			}
			for k, v := range tt.env {
				env[k] = v
			}
			// Bounded: a serve that took the settings would run until then.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out, errOut, err := runCLI(ctx, env, "", append([]string{"serve"}, tt.args...)...)
			text, code := mainStderr(errOut, err)
			lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
			if code != 2 || out != "" || len(lines) != 1 {
				t.Fatalf("got exit %d, stdout %q, stderr:\n%s\nwant exit 2 and one line", code, out, text)
			}
			if !strings.HasPrefix(lines[0], "nouvelhook: "+tt.want+" ") && !strings.HasPrefix(lines[0], "nouvelhook: "+tt.want+":") {
				t.Errorf("got %q, want a line that starts by naming %s", lines[0], tt.want)
			}
			if tt.secret != "" && strings.Contains(text, tt.secret) {
				t.Errorf("the line %q shows the secret %q", lines[0], tt.secret)
			}
			if _, err := os.Stat(db); !os.IsNotExist(err) {
				t.Errorf("the log %s was created (%v): the settings must be refused before the store opens", db, err)
			}
		})
	}
}
