//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// fileLock is an exclusive flock(2) on a sibling of the database file,
// held for the store's life. It is a separate file because the database's
// own POSIX locks belong to SQLite: closing any other descriptor of the
// database file in this process would drop them. flock and SQLite's fcntl
// locks are independent on Linux, and the lock goes when its holder exits,
// even by SIGKILL, so there is nothing stale to clean up.
type fileLock struct{ f *os.File }

// lockPath is the lock file beside the database at path.
func lockPath(path string) string { return path + ".lock" }

// lock takes the lock for the database at path, or says which process has
// it. flock belongs to the open file description, so a second Open in the
// same process is refused too.
func lock(path string) (*fileLock, error) {
	name := lockPath(path)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("database %s: cannot create its lock file: %s", path, osProblem(err))
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder := ""
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		return nil, fmt.Errorf("database %s is in use by another nouvelhook process%s", path, holder)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("database %s: lock %s: %s", path, name, errnoText(err))
	}
	// The pid is only for the message above; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &fileLock{f: f}, nil
}

// unlock releases the lock. The file stays: removing it could let two
// processes each lock a different file of the same name.
func (l *fileLock) unlock() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// access is access(2): whether this process's real uid may use path as mode
// asks (accessR, accessW, accessX). Root passes it except on read-only
// mounts and the few places the kernel denies even root.
func access(path string, mode uint32) error { return syscall.Access(path, mode) }
