package main

import (
	"context"
	"io"
)

func runJobs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usageError("not yet")
}
func runTrack(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usageError("not yet")
}
func runSign(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return usageError("not yet")
}
func runVersion(args []string, stdout, stderr io.Writer) error { return usageError("not yet") }
