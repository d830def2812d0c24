//go:build !linux

package redistest

import (
	"syscall"
	"time"
)

// sysProcAttr has nothing to add outside Linux.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopped cannot observe the process state outside Linux; it gives
// SIGSTOP a moment to take effect.
func waitStopped(pid int, done <-chan struct{}) error {
	time.Sleep(10 * time.Millisecond)
	return nil
}
