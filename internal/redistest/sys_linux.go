package redistest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// SysProcAttr makes the kernel kill a child process (a redis-server, or
// a test's client process) if the test binary dies without running its
// cleanups (a panic, or go test's -timeout).
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// WaitStopped polls /proc until process pid is in the stopped state, since
// SIGSTOP takes effect only when the target next handles signals. A
// receive from done (nil: never) means the process exited.
func WaitStopped(pid int, done <-chan struct{}) error {
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
