package handler

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

func TestReadyzFailsWhenTheStoreCannotCommit(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nh.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewAdmin(Deps{Store: st, Metrics: NewMetrics(nil), Logger: zerolog.Nop()}))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("open store: got %d %s, want 200", code, body)
	}
	st.Close()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "store is not writable") {
		t.Fatalf("closed store: got %d %s, want 503 saying the store is not writable", code, body)
	}
}

func TestErrorHandlerNeverAnswersACancelledRequestWithAnEmpty200(t *testing.T) {
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/v1/jobs/x", nil), rec)
	errorHandler(zerolog.Nop())(context.Canceled, c)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Fatalf("got %d %q, want 503 with an error body", rec.Code, rec.Body.String())
	}
}

func TestWaitParam(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", 0, false},
		{"30s", 30 * time.Second, false},
		{"45", 45 * time.Second, false},
		{"10m", MaxWait, false},
		{"-1s", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		e := echo.New()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/?wait="+tt.in, nil), httptest.NewRecorder())
		got, err := waitParam(c)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("wait=%q: got %s, %v; want %s, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}
