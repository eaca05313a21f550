package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Test fakes stay out of the shipped binary, even though the demo carries
// the stand-in Nouvel.
func TestBinaryHasNoTestPackages(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{"net/http/httptest", "testing"} {
		if slices.Contains(deps, pkg) {
			t.Errorf("the binary links %s", pkg)
		}
	}
}
