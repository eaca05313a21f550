//go:build !unix

package sqlite

// fileLock is a no-op where flock(2) does not exist.
type fileLock struct{}

func lock(string) (*fileLock, error) { return &fileLock{}, nil }

func (l *fileLock) unlock() error { return nil }

func access(string, uint32) error { return nil }
