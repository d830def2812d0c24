//go:build unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// forwarded are the signals run passes on to its command. Each of them
// would otherwise end lockctl, SIGQUIT with a dump of its goroutines, and
// leave the command running with nobody to renew its lease.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// jobSignals are the signals that a terminal or a shell sends to a whole
// job: a command that shares lockctl's process group has had them already.
var jobSignals = map[os.Signal]bool{syscall.SIGINT: true, syscall.SIGQUIT: true, syscall.SIGHUP: true}

// A child is the command run runs, and where its signals go.
//
// Outside a terminal session the command leads a process group of its own,
// and every signal goes to that group: a lost lease stops the command and
// all it started (the stages of a pipeline, the jobs of a script), and never
// lockctl or the processes beside it in its own job, such as "| tee log".
//
// When lockctl runs in the foreground of a terminal, the command stays in
// lockctl's process group, so that it can read the terminal and job control
// (^C, ^Z, fg) works as for any command: the terminal sends ^C and ^\ to
// both, and lockctl does not send them again. Signals then go to the
// command's process only.
type child struct {
	cmd   *exec.Cmd
	group bool // the command leads a process group of its own
}

// newChild prepares cmd to be started as run's command.
func newChild(cmd *exec.Cmd) *child {
	c := &child{cmd: cmd, group: !foreground()}
	cmd.SysProcAttr = procAttr(c.group)
	return c
}

// forward passes on sig, which lockctl received.
func (c *child) forward(sig os.Signal) {
	if !c.group && jobSignals[sig] {
		return
	}
	if s, ok := sig.(syscall.Signal); ok {
		c.signal(s)
	}
}

// stop asks the command to exit: SIGTERM, and SIGCONT so that a stopped
// command sees it.
func (c *child) stop() {
	c.signal(syscall.SIGTERM)
	c.signal(syscall.SIGCONT)
}

// kill kills the command.
func (c *child) kill() { c.signal(syscall.SIGKILL) }

// killRest kills what is left of the command's process group after it
// exited: background processes it started. They get no grace: the lease
// they worked under is gone.
func (c *child) killRest() {
	if c.group {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (c *child) signal(sig syscall.Signal) {
	if c.group {
		// A negative pid names the group. Errors mean that nothing is
		// left to signal.
		_ = syscall.Kill(-c.cmd.Process.Pid, sig)
		return
	}
	_ = c.cmd.Process.Signal(sig)
}

// exitStatus returns the status a shell would give for ps: the exit code,
// or 128+n if signal n killed the process.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// signalNumber returns the number of sig.
func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 0
}

// signalNames names the signals that run's messages mention.
var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGABRT: "SIGABRT", syscall.SIGKILL: "SIGKILL", syscall.SIGSEGV: "SIGSEGV",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
}

// signalName returns the name of sig, such as "SIGTERM".
func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		if name, ok := signalNames[s]; ok {
			return name
		}
	}
	return "signal " + sig.String()
}

// errNoRun is nil: run works on Unix systems.
var errNoRun error
