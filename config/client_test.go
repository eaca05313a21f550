package config

import (
	"path/filepath"
	"testing"
)

func TestLoadClient(t *testing.T) {
	tokenFile := writeFile(t, adminToken+"\n")
	tests := []struct {
		name string
		env  map[string]string
		want Client
	}{
		{"defaults", nil, Client{AdminURL: "http://127.0.0.1:8081"}},
		{"url and token", map[string]string{"NOUVELHOOK_ADMIN_URL": "https://admin.example.com/", "NOUVELHOOK_ADMIN_TOKEN": adminToken},
			Client{AdminURL: "https://admin.example.com", AdminToken: adminToken}},
		{"url with a path prefix", map[string]string{"NOUVELHOOK_ADMIN_URL": "http://[::1]:9000/nouvelhook//"},
			Client{AdminURL: "http://[::1]:9000/nouvelhook"}},
		{"token file", map[string]string{"NOUVELHOOK_ADMIN_TOKEN_FILE": tokenFile},
			Client{AdminURL: "http://127.0.0.1:8081", AdminToken: adminToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadClient(getenv(tt.env))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadClientErrors(t *testing.T) {
	tokenFile := writeFile(t, adminToken+"\n")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"url without scheme", map[string]string{"NOUVELHOOK_ADMIN_URL": "127.0.0.1:8081"},
			"NOUVELHOOK_ADMIN_URL must be an absolute http or https URL with a host"},
		{"url not http", map[string]string{"NOUVELHOOK_ADMIN_URL": "unix:///run/nouvelhook.sock"},
			"NOUVELHOOK_ADMIN_URL must be an absolute http or https URL with a host"},
		{"token and its file", map[string]string{"NOUVELHOOK_ADMIN_TOKEN": otherSecret, "NOUVELHOOK_ADMIN_TOKEN_FILE": tokenFile},
			"NOUVELHOOK_ADMIN_TOKEN and NOUVELHOOK_ADMIN_TOKEN_FILE are both set; use one"},
		{"missing token file", map[string]string{"NOUVELHOOK_ADMIN_TOKEN_FILE": missing},
			"NOUVELHOOK_ADMIN_TOKEN_FILE: open " + missing + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadClient(getenv(tt.env))
			if err == nil {
				t.Fatalf("got no error and %+v, want %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got error %q, want %q", err, tt.want)
			}
			checkNoSecret(t, err.Error())
		})
	}
}

func TestLoadSigningSecret(t *testing.T) {
	listFile := writeFile(t, fileSecret+","+otherSecret+"\n")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name    string
		flag    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "flag wins", flag: otherSecret, env: map[string]string{"NOUVEL_WEBHOOK_SECRET": hookSecret}, want: otherSecret},
		{name: "first of the env list", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": " , " + hookSecret + " , " + otherSecret}, want: hookSecret},
		{name: "first of the file list", env: map[string]string{"NOUVEL_WEBHOOK_SECRET_FILE": listFile}, want: fileSecret},
		{name: "none", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": " , "},
			wantErr: "no signing secret: pass --secret or set NOUVEL_WEBHOOK_SECRET (or NOUVEL_WEBHOOK_SECRET_FILE)"},
		{name: "both forms", env: map[string]string{"NOUVEL_WEBHOOK_SECRET": hookSecret, "NOUVEL_WEBHOOK_SECRET_FILE": listFile},
			wantErr: "NOUVEL_WEBHOOK_SECRET and NOUVEL_WEBHOOK_SECRET_FILE are both set; use one"},
		{name: "missing file", env: map[string]string{"NOUVEL_WEBHOOK_SECRET_FILE": missing},
			wantErr: "NOUVEL_WEBHOOK_SECRET_FILE: open " + missing + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSigningSecret(tt.flag, getenv(tt.env))
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				checkNoSecret(t, gotErr)
			}
			if got != tt.want || gotErr != tt.wantErr {
				t.Errorf("got %q and error %q, want %q and error %q", got, gotErr, tt.want, tt.wantErr)
			}
		})
	}
}
