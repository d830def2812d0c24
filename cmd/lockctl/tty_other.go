//go:build unix && !linux && !darwin

package main

// foreground reports whether lockctl runs in the foreground of a terminal.
// Where it cannot tell, it says no: the command then leads a process group
// of its own (see child), which is safe, if not handy in a terminal.
func foreground() bool { return false }
