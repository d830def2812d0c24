//go:build linux || darwin

package main

import (
	"syscall"
	"unsafe"
)

// foreground reports whether lockctl runs in the foreground of a terminal:
// its standard input is a terminal whose foreground process group is
// lockctl's. /dev/null, under cron or systemd, is not a terminal.
func foreground() bool {
	var pgrp int32 // a pid_t
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
	return errno == 0 && int(pgrp) == syscall.Getpgrp()
}
