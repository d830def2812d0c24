package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// idle is a shell loop that runs until a signal ends the shell. A shell
// runs a trap only once its foreground command has exited, and a signal
// sent to the process group as that command starts may be lost to it (the
// shell's fork has not reset its handlers yet): short sleeps bound the
// delay.
const idle = "while :; do sleep 0.1; done"

// TestRunExclusion runs two lockctl processes at once, each running a
// critical section three times on one key against three Redis nodes: the
// sections must never overlap, must all run, and must see increasing
// fencing tokens. Each section logs its start and end to a shared file and
// increments a counter file read-modify-write, with a pause in between, so
// that an overlap shows in the log and loses an update.
func TestRunExclusion(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 3)
	dir := t.TempDir()
	logFile, counter := filepath.Join(dir, "log"), filepath.Join(dir, "counter")
	if err := os.WriteFile(counter, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const section = `echo "start $LOCK_TOKEN" >> "$LOG"
v=$(cat "$COUNTER")
sleep 0.2
echo $((v + 1)) > "$COUNTER"
echo "end $LOCK_TOKEN" >> "$LOG"`
	env := []string{"LOG=" + logFile, "COUNTER=" + counter}
	args := append(redis, "-ttl", "5s", "exclusion", "--", "sh", "-c", section)

	const workers, runs = 2, 3
	type span struct {
		worker     int
		start, end time.Time
	}
	var (
		mu    sync.Mutex
		spans []span
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for range runs {
				start := time.Now()
				code, _, stderr := runProcess(t, env, append([]string{"run"}, args...)...)
				if code != 0 {
					t.Errorf("worker %d: lockctl run: exit %d; stderr:\n%s", w, code, stderr)
				}
				mu.Lock()
				spans = append(spans, span{w, start, time.Now()})
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	if got, err := os.ReadFile(counter); err != nil || strings.TrimSpace(string(got)) != strconv.Itoa(workers*runs) {
		t.Errorf("counter = %q, %v; want %d: updates were lost", got, err, workers*runs)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2*workers*runs {
		t.Fatalf("log has %d lines, want %d:\n%s", len(lines), 2*workers*runs, data)
	}
	var last uint64
	for i := 0; i < len(lines); i += 2 {
		start, end := strings.TrimPrefix(lines[i], "start "), strings.TrimPrefix(lines[i+1], "end ")
		if start == lines[i] || end == lines[i+1] || start != end {
			t.Fatalf("log lines %d-%d: %q, %q; want the start and end of one section:\n%s", i+1, i+2, lines[i], lines[i+1], data)
		}
		token, err := strconv.ParseUint(start, 10, 64)
		if err != nil || token <= last {
			t.Errorf("section %d: token %q after %d, want a larger one", i/2+1, start, last)
		}
		last = token
	}
	// The processes of the two workers ran at the same time, so they did
	// contend for the key: the test would prove nothing otherwise.
	contended := false
	for _, a := range spans {
		for _, b := range spans {
			if a.worker != b.worker && a.start.Before(b.end) && b.start.Before(a.end) {
				contended = true
			}
		}
	}
	if !contended {
		t.Errorf("the workers' processes never ran at the same time")
	}
}

// TestRunLostLease pins that a lost lease stops the command: it gets
// SIGTERM, what it left in the background is killed, and lockctl exits
// with exitLeaseLost soon after the loss.
func TestRunLostLease(t *testing.T) {
	t.Parallel()
	redis, servers := redisFlag(t, 3)
	// The background subshell ignores SIGTERM and outlives the command;
	// lockctl must kill it when the command exits.
	const script = `trap 'echo term; exit 0' TERM
(trap '' TERM; sleep 30) &
echo "bg $!"
echo ready
wait`
	p := startProcess(t, nil, append(append([]string{"run"}, redis...), "-ttl", "1s", "lost", "--", "sh", "-c", script)...)
	bg, err := strconv.Atoi(strings.TrimPrefix(p.expect("bg "), "bg "))
	if err != nil {
		t.Fatal(err)
	}
	p.expect("ready")

	// The key is gone: the next renewal, within a third of the TTL, is
	// refused. From every node, not just a majority: Acquire returns once
	// a majority granted, and a grant still on its way to the last node
	// would make a majority again with the one left.
	lost := time.Now()
	for _, s := range servers {
		if err := s.FlushAll(); err != nil {
			t.Fatal(err)
		}
	}
	p.expect("term")
	if code := p.waitWithin(10 * time.Second); code != exitLeaseLost {
		t.Errorf("lockctl run after the lease was lost: exit %d, want %d; stderr:\n%s", code, exitLeaseLost, p.stderr.String())
	}
	if d := time.Since(lost); d > 5*time.Second {
		t.Errorf("lockctl run exited %v after the loss, want within the TTL or so", d)
	}
	for _, want := range []string{"lease of lost lost", "SIGTERM", "the command exited with status 0"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr %q, want it to contain %q", p.stderr.String(), want)
		}
	}
	if !processGone(bg, 5*time.Second) {
		t.Errorf("the command's background process %d still runs after the lease was lost", bg)
		_ = syscall.Kill(bg, syscall.SIGKILL)
	}
}

// TestRunKillAfterGrace pins that a command that ignores SIGTERM is killed
// -grace after it.
func TestRunKillAfterGrace(t *testing.T) {
	t.Parallel()
	redis, servers := redisFlag(t, 3)
	const grace = 500 * time.Millisecond
	// sleep inherits the ignored SIGTERM.
	const script = `trap '' TERM; echo ready; sleep 30; echo after`
	p := startProcess(t, nil, append(append([]string{"run"}, redis...), "-ttl", "1s", "-grace", grace.String(), "stubborn", "--", "sh", "-c", script)...)
	p.expect("ready")
	lost := time.Now()
	for _, s := range servers { // every node: see TestRunLostLease
		if err := s.FlushAll(); err != nil {
			t.Fatal(err)
		}
	}
	if code := p.waitWithin(10 * time.Second); code != exitLeaseLost {
		t.Errorf("lockctl run after the lease was lost: exit %d, want %d; stderr:\n%s", code, exitLeaseLost, p.stderr.String())
	}
	if d := time.Since(lost); d < grace || d > 5*time.Second {
		t.Errorf("lockctl run exited %v after the loss, want -grace (%v) and a little", d, grace)
	}
	if line, ok := <-p.lines; ok {
		t.Errorf("the command wrote %q after SIGTERM, want it killed", line)
	}
	for _, want := range []string{"did not exit within 500ms of SIGTERM: SIGKILL", "was killed by SIGKILL"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr %q, want it to contain %q", p.stderr.String(), want)
		}
	}
}

// TestRunStatus pins the exit status of run and the environment of its
// command.
func TestRunStatus(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 3)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string // after run -redis ...
		wantCode   int
		wantStdout string // a regular expression
		wantStderr string // a part of stderr; "" for none at all
	}{
		{"success", []string{"k1", "--", "true"}, 0, "^$", ""},
		{"exit code", []string{"k2", "--", "sh", "-c", "exit 7"}, 7, "^$", ""},
		{"killed by a signal", []string{"k3", "--", "sh", "-c", "kill -USR1 $$"}, 128 + int(syscall.SIGUSR1), "^$", ""},
		{"not found", []string{"k4", "--", "no-such-command-here"}, exitNotFound, "^$", "no-such-command-here"},
		{"not executable", []string{"k5", "--", notExec}, exitCannotRun, "^$", "permission denied"},
		{"no --", []string{"k6", "sh", "-c", "exit 3"}, 3, "^$", ""},
		{"environment", []string{"k7", "sh", "-c", `echo "$LOCK_KEY $LOCK_TOKEN"`}, 0, `^k7 [1-9][0-9]*\n$`, ""},
		{"namespace", []string{"-namespace", "app", "k8", "--", "sh", "-c", `echo "$LOCK_KEY"`}, 0, "^app:k8\n$", ""},
		{"try once, free", []string{"-wait", "0", "k9", "true"}, 0, "^$", ""},
		{"ttl too short", []string{"-ttl", "5ms", "k10", "true"}, 2, "^$", "invalid -ttl 5ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runProcess(t, nil, append(append([]string{"run"}, redis...), tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("lockctl run %q: exit %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, stderr)
			}
			if !regexp.MustCompile(tt.wantStdout).MatchString(stdout) {
				t.Errorf("lockctl run %q: stdout %q, want it to match %s", tt.args, stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && stderr != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("lockctl run %q: stderr %q, want %q", tt.args, stderr, tt.wantStderr)
			}
		})
	}
}

// TestRunWait pins -wait: a held key makes run give up with
// exitNotAcquired after -wait, at once with -wait 0, and a waiting run gets
// the key when its holder ends.
func TestRunWait(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 3)
	run := append([]string{"run"}, redis...)
	holder := startProcess(t, nil, append(run, "busy", "--", "sh", "-c", "trap 'exit 0' TERM; echo ready; "+idle)...)
	holder.expect("ready")

	for _, wait := range []time.Duration{0, 300 * time.Millisecond} {
		start := time.Now()
		code, _, stderr := runProcess(t, nil, append(run, "-wait", wait.String(), "busy", "--", "echo", "ran")...)
		d := time.Since(start)
		if code != exitNotAcquired {
			t.Errorf("lockctl run -wait %v on a held key: exit %d, want %d; stderr:\n%s", wait, code, exitNotAcquired, stderr)
		}
		if !strings.Contains(stderr, "busy: not acquired") {
			t.Errorf("lockctl run -wait %v on a held key: stderr %q, want it to say so", wait, stderr)
		}
		if d < wait || d > wait+10*time.Second {
			t.Errorf("lockctl run -wait %v on a held key took %v", wait, d)
		}
	}

	waiter := startProcess(t, nil, append(run, "-wait", "1m", "busy", "--", "echo", "ran")...)
	// The waiter cannot run before the holder ends: its first line comes
	// after the holder's exit, which the holder's wait shows.
	if err := holder.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := holder.waitWithin(10 * time.Second); code != 0 {
		t.Errorf("holder after SIGTERM: exit %d, want 0; stderr:\n%s", code, holder.stderr.String())
	}
	waiter.expect("ran")
	if code := waiter.waitWithin(10 * time.Second); code != 0 {
		t.Errorf("waiter: exit %d, want 0; stderr:\n%s", code, waiter.stderr.String())
	}
}

// TestRunForwardsSignals pins that the signals lockctl gets reach the
// command, which holds the lock until it exits.
func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 3)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1} {
		name := strings.TrimPrefix(signalName(sig), "SIG")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			key := "forward-" + name
			script := fmt.Sprintf(`trap 'echo got %s; exit 5' %s; echo ready; %s`, name, name, idle)
			p := startProcess(t, nil, append(append([]string{"run"}, redis...), key, "--", "sh", "-c", script)...)
			p.expect("ready")
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			p.expect("got " + name)
			if code := p.waitWithin(10 * time.Second); code != 5 {
				t.Errorf("lockctl run after %s: exit %d, want the command's 5; stderr:\n%s", name, code, p.stderr.String())
			}
			// Released once the command exited: sooner than its TTL, 10s.
			if code, _, stderr := runProcess(t, nil, append(append([]string{"run"}, redis...), "-wait", "5s", key, "true")...); code != 0 {
				t.Errorf("lockctl run -wait 5s after the holder exited: exit %d; stderr:\n%s", code, stderr)
			}
		})
	}
}

// TestRunSignalWhileWaiting pins that a signal ends a wait, with 128+n.
func TestRunSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 1)
	run := append([]string{"run"}, redis...)
	holder := startProcess(t, nil, append(run, "held", "--", "sh", "-c", "trap 'exit 0' TERM; echo ready; "+idle)...)
	holder.expect("ready")
	waiter := startProcess(t, nil, append(run, "-v", "held", "--", "echo", "ran")...)
	// Signal the waiter once it says it acquires: it handles signals then.
	if !pollUntil(lineTimeout, func() bool { return strings.Contains(waiter.stderr.String(), "acquiring held") }) {
		t.Fatalf("the waiter does not acquire the key; stderr:\n%s", waiter.stderr.String())
	}
	if err := waiter.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waiter.waitWithin(10 * time.Second); code != 128+int(syscall.SIGINT) {
		t.Errorf("waiter after SIGINT: exit %d, want %d; stderr:\n%s", code, 128+int(syscall.SIGINT), waiter.stderr.String())
	}
	if line, ok := <-waiter.lines; ok {
		t.Errorf("the waiter's command ran: %q", line)
	}
	_ = holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.waitWithin(10 * time.Second)
}

// TestRunTerminal pins the process group of the command: its own outside a
// terminal, lockctl's in the foreground of one (run under script(1), which
// gives it a terminal).
func TestRunTerminal(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads process groups from /proc")
	}
	redis, _ := redisFlag(t, 1)
	// Field 5 of /proc/PID/stat is the process group.
	const show = `echo "$(cut -d' ' -f5 /proc/$$/stat) $(cut -d' ' -f5 /proc/$PPID/stat) $$"`
	args := append(append([]string{"run"}, redis...), "tty", "--", "sh", "-c", show)

	_, stdout, stderr := runProcess(t, nil, args...)
	var cmdGroup, lockctlGroup, pid int
	if _, err := fmt.Sscan(stdout, &cmdGroup, &lockctlGroup, &pid); err != nil {
		t.Fatalf("lockctl run: stdout %q, stderr %q: %v", stdout, stderr, err)
	}
	if cmdGroup != pid || cmdGroup == lockctlGroup {
		t.Errorf("without a terminal: the command's group %d, its pid %d, lockctl's group %d; want a group of its own", cmdGroup, pid, lockctlGroup)
	}

	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not found: cannot run lockctl in a terminal")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	line := exe
	for _, a := range args {
		line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command(script, "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), execEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("script -c lockctl run: %v; output %q", err, out)
	}
	if _, err := fmt.Sscan(string(out), &cmdGroup, &lockctlGroup, &pid); err != nil {
		t.Fatalf("script -c lockctl run: output %q: %v", out, err)
	}
	if cmdGroup != lockctlGroup {
		t.Errorf("in a terminal: the command's group %d, lockctl's %d; want the same", cmdGroup, lockctlGroup)
	}
}

// processGone reports whether the process pid has ended, or does within d:
// it no longer exists, or is a zombie that nobody reaped (in a container
// whose first process does not reap orphans).
func processGone(pid int, d time.Duration) bool {
	return pollUntil(d, func() bool {
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		return i >= 0 && strings.HasPrefix(string(stat[i:]), ") Z")
	})
}

// pollUntil polls cond, a condition no event announces, until it holds or d
// has passed, and reports whether it held.
func pollUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
