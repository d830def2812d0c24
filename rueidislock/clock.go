package rueidislock

import "time"

// A clock gives a Backend its readings of time. The validity of an attempt
// is measured on its monotonic reading only: when the attempt was sent,
// whether the decision came before the deadline. The wall reading serves
// only as a fencing proposal, whose value decides the cost of an attempt,
// never its safety; so a wall-clock step (an operator or NTP setting the
// time) moves no deadline (redlock-rb#50 measured validity on Time.now).
//
// The default is package time. Tests replace it (export_test.go) with one
// that runs slow or fast, or whose wall reading is stepped, to show what
// the drift margin covers and what it does not (S12).
type clock interface {
	// now returns the monotonic reading.
	now() time.Time
	// wall returns the wall-clock reading.
	wall() time.Time
	// system returns the instant of package time at which this clock
	// reads t. Deadlines go through it where they leave the Backend for
	// timers that run on package time: the node calls' contexts, and the
	// Result whose Start the lock package counts the lease's deadline from.
	system(t time.Time) time.Time
}

// systemClock is package time: both readings are time.Now's.
type systemClock struct{}

func (systemClock) now() time.Time               { return time.Now() }
func (systemClock) wall() time.Time              { return time.Now() }
func (systemClock) system(t time.Time) time.Time { return t }
