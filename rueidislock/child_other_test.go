//go:build !linux

package rueidislock_test

import (
	"syscall"
	"time"
)

// childSysProcAttr has nothing to add outside Linux.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// waitProcessStopped cannot observe a process's state outside Linux; it
// gives SIGSTOP a moment to take effect.
func waitProcessStopped(int) error {
	time.Sleep(10 * time.Millisecond)
	return nil
}
