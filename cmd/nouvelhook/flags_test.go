package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
)

// Every command answers --help with its usage, exit 0, and spells its
// flags "--name" as the usage lines and README do.
func TestCLIHelpEverywhere(t *testing.T) {
	singleDash := regexp.MustCompile(`(?m)^ +-[a-z]`)
	for _, args := range [][]string{
		{"serve", "--help"}, {"jobs", "list", "--help"}, {"jobs", "show", "--help"}, {"jobs", "wait", "--help"},
		{"track", "--help"}, {"submit", "--help"}, {"sign", "--help"}, {"demo", "--help"},
		{"version", "--help"}, {"healthcheck", "--help"}, {"healthcheck", "-h"}, {"db", "--help"}, {"db", "backup", "--help"},
	} {
		out, errOut, err := runCLI(context.Background(), nil, "", args...)
		text, code := mainStderr(errOut, err)
		if code != 0 || out != "" {
			t.Errorf("%v: got exit %d, stdout %q; want exit 0 and the usage on stderr", args, code, out)
		}
		if want := "Usage: nouvelhook " + args[0]; !strings.HasPrefix(text, want) {
			t.Errorf("%v: got %q, want it to start with %q", args, text, want)
		}
		if m := singleDash.FindString(text); m != "" {
			t.Errorf("%v: usage has a single-dash flag %q, want --name:\n%s", args, m, text)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		out, _, err := runCLI(context.Background(), nil, "", args...)
		if err != nil || !strings.HasPrefix(out, "nouvelhook receives") || !strings.Contains(out, "healthcheck") {
			t.Errorf("%v: got %q, %v; want the command list", args, out, err)
		}
	}
}

func TestCLIVersionFlag(t *testing.T) {
	want, _, err := runCLI(context.Background(), nil, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{"--version", "-version"} {
		got, _, err := runCLI(context.Background(), nil, "", arg)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q as version prints", arg, got, err, want)
		}
	}
}

// A bad flag is reported once, as the last line of stderr, with exit
// status 2; the flag package's own report is not printed as well.
func TestCLIBadFlagReportedOnce(t *testing.T) {
	tests := []struct {
		args []string
		want string // the last line of stderr
	}{
		{[]string{"serve", "--nope"}, "nouvelhook: unknown flag --nope"},
		{[]string{"jobs", "list", "--nope"}, "nouvelhook: jobs list: unknown flag --nope"},
		{[]string{"jobs", "list", "-nope"}, "nouvelhook: jobs list: unknown flag --nope"},
		{[]string{"jobs", "list", "--limit", "many"}, `nouvelhook: jobs list: invalid value "many" for --limit: parse error`},
		{[]string{"jobs", "list", "--json=maybe"}, `nouvelhook: jobs list: invalid boolean value "maybe" for --json: parse error`},
		{[]string{"jobs", "list", "--status"}, "nouvelhook: jobs list: flag --status needs a value"},
		{[]string{"jobs", "show", "x", "--nope"}, "nouvelhook: jobs show: unknown flag --nope"},
		{[]string{"jobs", "wait", "--nope", "x"}, "nouvelhook: jobs wait: unknown flag --nope"},
		{[]string{"track", "--nope", "x"}, "nouvelhook: track: unknown flag --nope"},
		{[]string{"submit", "--nope"}, "nouvelhook: submit: unknown flag --nope"},
		{[]string{"sign", "--nope"}, "nouvelhook: sign: unknown flag --nope"},
		{[]string{"demo", "--nope"}, "nouvelhook: demo: unknown flag --nope"},
		{[]string{"version", "--nope"}, "nouvelhook: version: unknown flag --nope"},
		{[]string{"healthcheck", "--nope"}, "nouvelhook: healthcheck: unknown flag --nope"},
		{[]string{"db", "backup", "x.db", "--nope"}, "nouvelhook: db backup: unknown flag --nope"},
	}
	for _, tt := range tests {
		out, errOut, err := runCLI(context.Background(), map[string]string{"NOUVEL_WEBHOOK_SECRET": "s"}, "", tt.args...)
		text, code := mainStderr(errOut, err)
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if code != 2 || out != "" || lines[len(lines)-1] != tt.want {
			t.Errorf("%v: got exit %d, last line %q; want exit 2 and %q", tt.args, code, lines[len(lines)-1], tt.want)
		}
		// What the flag package would have printed too: the bad flag or value.
		needle := "nope"
		for _, n := range []string{"many", "maybe", "needs"} {
			if strings.Contains(tt.want, n) {
				needle = n
			}
		}
		if n := strings.Count(text, needle); n != 1 {
			t.Errorf("%v: %q appears %d times on stderr, want once:\n%s", tt.args, needle, n, text)
		}
	}
}
