//go:build !unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

// errNoRun is the error of run where it cannot supervise a command.
var errNoRun = errors.New("run needs a Unix system: it cannot signal a command on " + runtime.GOOS)

var forwarded = []os.Signal{os.Interrupt}

type child struct{ cmd *exec.Cmd }

func newChild(cmd *exec.Cmd) *child { return &child{cmd: cmd} }

func (c *child) forward(os.Signal) { c.kill() }
func (c *child) stop()             { c.kill() }
func (c *child) kill()             { _ = c.cmd.Process.Kill() }
func (c *child) killRest()         {}

func exitStatus(ps *os.ProcessState) int { return ps.ExitCode() }
func signalNumber(os.Signal) int         { return 2 }
func signalName(sig os.Signal) string    { return sig.String() }
