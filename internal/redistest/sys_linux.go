package redistest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel kill redis-server if the test binary dies
// without running its cleanups (a panic, or go test's -timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped polls /proc until the process is in the stopped state, since
// SIGSTOP takes effect only when the target next handles signals.
func waitStopped(pid int, done <-chan struct{}) error {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	deadline := time.Now().Add(time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redistest: pid %d exited while being frozen", pid)
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: pid %d not stopped 1s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
