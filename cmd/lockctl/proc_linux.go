package main

import "syscall"

// procAttr returns the attributes of run's command: a process group of its
// own if group is set (see child), and SIGKILL if lockctl dies, since a
// command whose lease nobody renews must not outlive it. Linux sends that
// signal when the thread that started the command ends, which is why run
// starts it on a locked thread that waits for it.
func procAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group, Pdeathsig: syscall.SIGKILL}
}
