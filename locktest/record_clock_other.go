//go:build !linux

package locktest

import "time"

// hostNow returns the wall clock in nanoseconds. Outside Linux, Go's
// monotonic clock is not one this package can read from outside the
// runtime, so stamps from several processes compare only through the wall
// clock, which a clock step during a recording would skew.
func hostNow() int64 { return time.Now().UnixNano() }
