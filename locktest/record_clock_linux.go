package locktest

import "golang.org/x/sys/unix"

// hostNow returns the host's monotonic clock in nanoseconds: the clock Go's
// runtime reads for time.Now's monotonic reading, shared by every process
// of the host and never stepped, so that stamps from several processes
// compare.
func hostNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("locktest: clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // valid clock: cannot fail
	}
	return ts.Nano()
}
