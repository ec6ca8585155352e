package workeragent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrStateDirLocked is returned by New when another process (or another
// Agent in this one) holds the state directory: two workers sharing one
// would share a worker id and replace each other's sessions at the hub.
var ErrStateDirLocked = errors.New("state directory is in use by another worker")

// lockFile is the state directory's lock: held with flock(2) for as long
// as the Agent uses the directory; it holds the holder's pid, for the
// error a second process prints. The kernel drops the lock when the
// process exits, however it exits, so a stale file never locks anyone out.
const lockFile = "lock"

// lockStateDir creates dir and takes its lock without waiting. A zero dir
// (ephemeral state) needs no lock: it returns nil.
func lockStateDir(dir string) (*os.File, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(p); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w%s: %s", ErrStateDirLocked, holder, dir)
		}
		return nil, fmt.Errorf("state dir: lock %s: %w", p, err)
	}
	// Best effort: the pid only makes the error above more helpful.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// unlockStateDir releases the lock lockStateDir took (nil: none).
func unlockStateDir(f *os.File) {
	if f != nil {
		_ = f.Close() // closing the last descriptor drops the flock
	}
}
