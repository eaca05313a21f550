package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/nouvelhook/nouvelhook/store"
)

// newFlagSet returns the flag set of one command. On --help or a bad flag it
// prints "Usage: nouvelhook <synopsis>" and the command's flags to stderr.
// The flag package's own report of a bad flag is discarded: main prints the
// error, once, as the last line.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nouvelhook %s\n", synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(stderr, "\nFlags:\n")
			printFlags(stderr, fs)
		}
	}
	return fs
}

// printFlags is fs.PrintDefaults with the "--name" spelling that the usage
// lines and README use; the flag package accepts both.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, "  -") {
			line = "  --" + line[3:]
		}
		io.WriteString(w, line)
	}
}

// flagError rewrites the flag package's errors with "--name", the spelling
// of the usage lines: "unknown flag --nope" rather than "flag provided but
// not defined: -nope". Any other error is returned as it is.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return errors.New("unknown flag --" + name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return errors.New("flag --" + name + " needs a value")
	}
	if m := invalidFlagValue.FindStringSubmatch(msg); m != nil {
		return errors.New(m[1] + "--" + m[2] + m[3])
	}
	return err
}

// invalidFlagValue matches the flag package's "invalid value "x" for flag
// -n: …" and "invalid boolean value "x" for -n: …".
var invalidFlagValue = regexp.MustCompile(`^(invalid (?:boolean )?value ".*" for )(?:flag )?-([^\s:]+)(:.*)$`)

// parseArgs parses args with fs and returns the positional arguments.
// fs.Parse alone stops at the first positional, which would make
// "jobs show ID --json" treat --json as an argument; parseArgs parses again
// after each positional instead. Everything after "--" is positional.
// --help is flag.ErrHelp; a bad flag is a usageError.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError("%s: %v", fs.Name(), flagError(err))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// checkArgs wants between lo and hi positional arguments (hi < 0: no upper
// bound); what names the missing one in the error.
func checkArgs(fs *flag.FlagSet, pos []string, lo, hi int, what string) error {
	switch {
	case len(pos) < lo:
		fs.Usage()
		return usageError("%s: missing %s", fs.Name(), what)
	case hi >= 0 && len(pos) > hi:
		fs.Usage()
		return usageError("%s: unexpected argument %q", fs.Name(), pos[hi])
	}
	return nil
}

// checkJobIDs refuses, before any request, an id the service would refuse.
func checkJobIDs(cmd string, ids []string) error {
	for _, id := range ids {
		if !store.ValidJobID(id) {
			return usageError("%s: %q is not a job id (1-128 letters, digits, '-' or '_')", cmd, id)
		}
	}
	return nil
}

// parseJobID parses the arguments of a command that takes one JOBID.
func parseJobID(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if err := checkArgs(fs, pos, 1, 1, "JOBID"); err != nil {
		return "", err
	}
	return pos[0], checkJobIDs(fs.Name(), pos)
}

// clientCommand is one command of a group of client commands, such as
// "jobs list".
type clientCommand struct {
	name string
	run  func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// runGroup runs the command of group that args[0] names with the rest of
// args. With no command, an unknown one or --help it prints usage to
// stderr; the first two are usage errors.
func runGroup(ctx context.Context, group, usage string, cmds []clientCommand, args []string,
	getenv func(string) string, stdout, stderr io.Writer) error {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError("%s: no command given (%s or %s)", group, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage)
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return flag.ErrHelp
	}
	return usageError("%s: unknown command %q", group, args[0])
}
