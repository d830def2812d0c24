package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock/internal/redistest"
)

// lineTimeout bounds the wait for a line a command is about to write.
const lineTimeout = 20 * time.Second

// testNodeTimeout is the node timeout of the tests: longer than the
// default, since they run beside other tests under -race, and a slow node
// is not what they test.
const testNodeTimeout = "250ms"

// redisFlag starts n redis-server nodes for t and returns the flags that
// name them, and the nodes. It skips t without redis-server, unless
// LOCK_REQUIRE_REDIS=1.
func redisFlag(t *testing.T, n int) ([]string, []*redistest.Server) {
	t.Helper()
	servers := redistest.StartN(t, n)
	addrs := make([]string, n)
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return []string{"-redis", strings.Join(addrs, ","), "-node-timeout", testNodeTimeout}, servers
}

// lockctlCmd returns a command that runs lockctl as a process of its own:
// this test binary, which runs main when execEnv is set. LOCK_CONFIG is not
// in its environment (TestMain removed it); env adds variables.
func lockctlCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
	return cmd
}

// runProcess runs lockctl as a process with args and returns its exit
// status and output.
func runProcess(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := lockctlCmd(t, env, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var xerr *exec.ExitError
	if err != nil && !errors.As(err, &xerr) {
		t.Fatalf("lockctl %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// A proc is a lockctl process that a test talks to while it runs.
type proc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	out    *os.File    // the read end of its stdout
	lines  chan string // its stdout, line by line; closed at the end
	read   chan struct{}
	stderr syncBuffer

	waitOnce sync.Once
	code     int
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProcess starts lockctl as a process with args. Its stdout is a pipe
// of the test's own, rather than cmd.StdoutPipe, so that reading it may go
// on while Wait runs: the command's lines are what tests wait for.
func startProcess(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, args: args, cmd: lockctlCmd(t, env, args...), out: r, lines: make(chan string, 64), read: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = w, &p.stderr
	// A child the test failed to stop must not hold Wait up, through the
	// stderr it inherited, past the end of the test.
	p.cmd.WaitDelay = 5 * time.Second
	err = p.cmd.Start()
	w.Close() // the process and its children hold the write end now
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	go func() { // returns when every writer has closed stdout, or at cleanup
		defer close(p.read)
		defer close(p.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // if still running, after a failure
		p.wait()
		r.Close()
		<-p.read
	})
	return p
}

// expect waits for the next line of stdout, and fails t unless it starts
// with want. It returns the line.
func (p *proc) expect(want string) string {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("lockctl %q: stdout ended, want a line %q; exit %d, stderr:\n%s", p.args, want, p.wait(), p.stderr.String())
		}
		if !strings.HasPrefix(line, want) {
			p.t.Fatalf("lockctl %q: stdout line %q, want %q; stderr:\n%s", p.args, line, want, p.stderr.String())
		}
		return line
	case <-time.After(lineTimeout):
		p.t.Fatalf("lockctl %q: no line %q within %v; stderr:\n%s", p.args, want, lineTimeout, p.stderr.String())
	}
	return ""
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait() int {
	p.waitOnce.Do(func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
	})
	return p.code
}

// waitWithin is wait that fails t if the process has not exited within d.
func (p *proc) waitWithin(d time.Duration) int {
	p.t.Helper()
	done := make(chan int, 1)
	go func() { done <- p.wait() }() // returns when the process exits, at the latest at cleanup
	select {
	case code := <-done:
		return code
	case <-time.After(d):
		p.t.Fatalf("lockctl %q still runs after %v; stderr:\n%s", p.args, d, p.stderr.String())
	}
	return 0
}
