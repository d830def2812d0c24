package rueidislock_test

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// childSysProcAttr makes the kernel kill a client process if the test
// binary dies without running its cleanups (a panic, or -timeout).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitProcessStopped polls /proc until process pid is stopped, since
// SIGSTOP takes effect only when the process next handles signals.
func waitProcessStopped(pid int) error {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	for deadline := time.Now().Add(time.Second); ; {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d not stopped 1s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
