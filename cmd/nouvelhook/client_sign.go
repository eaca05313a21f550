package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/nouvelhook/nouvelhook/config"
	"github.com/nouvelhook/nouvelhook/handler"
)

func runSign(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("sign", "sign [--secret S] [FILE]\n\n"+
		"Prints the lowercase hex HMAC-SHA256 of the exact bytes of FILE (stdin without\n"+
		"FILE, or with -), as Nouvel sends it in X-Nouvel-Signature.", stderr)
	secretFlag := fs.String("secret", "", "signing `secret` (default: the first of NOUVEL_WEBHOOK_SECRET or\n"+
		"NOUVEL_WEBHOOK_SECRET_FILE); other users may see it in ps, so prefer those")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 1, ""); err != nil {
		return err
	}
	secret, err := config.LoadSigningSecret(*secretFlag, getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	body, err := readBody(pos, stdin)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, hex.EncodeToString(handler.Sign([]byte(secret), body)))
	return err
}

// readBody reads the body to sign, byte for byte, from the file named in
// pos or from stdin, refusing one over maxBody rather than signing a prefix.
func readBody(pos []string, stdin io.Reader) ([]byte, error) {
	name, r := "stdin", stdin
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		name, r = pos[0], f
	}
	body, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, maxBody>>20)
	}
	return body, nil
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version\n\nPrints the version, commit, Go version and platform.", stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := checkArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "nouvelhook %s (commit %s, %s, %s/%s)\n",
		version, buildCommit(commit), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// buildCommit is the commit set at link time; else the one go build stamps
// when it builds from a git checkout, shortened; else "unknown".
func buildCommit(linked string) string {
	if linked != "" {
		return linked
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value[:min(12, len(s.Value))]
			}
		}
	}
	return "unknown"
}
