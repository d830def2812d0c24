//go:build !linux

package redistest

import (
	"syscall"
	"time"
)

// SysProcAttr has nothing to add outside Linux.
func SysProcAttr() *syscall.SysProcAttr { return nil }

// WaitStopped cannot observe the process state outside Linux; it gives
// SIGSTOP a moment to take effect.
func WaitStopped(pid int, done <-chan struct{}) error {
	time.Sleep(10 * time.Millisecond)
	return nil
}
