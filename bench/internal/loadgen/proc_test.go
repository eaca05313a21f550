package loadgen

import (
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	line := []byte("42 (postgres: wal) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 1 0 100 0 0")
	got, err := StatCPU(line)
	if err != nil || got != 3800*time.Millisecond {
		t.Errorf("StatCPU = %v, %v, want 3.8s", got, err)
	}
}

func TestDirectURL(t *testing.T) {
	got := DirectURL("postgres://u@h:5432/db?pool_max_conns=8&sslmode=disable")
	if want := "postgres://u@h:5432/db?sslmode=disable"; got != want {
		t.Errorf("DirectURL = %q, want %q", got, want)
	}
}
