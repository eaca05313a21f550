//go:build !unix

package config

// openFileLimit is 0 where there is no open-file limit to read.
func openFileLimit() uint64 { return 0 }
