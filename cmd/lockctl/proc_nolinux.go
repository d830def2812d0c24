//go:build unix && !linux

package main

import "syscall"

// procAttr returns the attributes of run's command: a process group of its
// own if group is set (see child). Only Linux can kill the command when
// lockctl dies.
func procAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group}
}
