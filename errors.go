package lock

import (
	"errors"
	"fmt"
)

var (
	// ErrNotAcquired is returned when a key could not be locked: by
	// TryAcquire when another holder has it, and by Acquire when its retries
	// ran out or its context ended. In the last case the error also matches
	// the context's error.
	ErrNotAcquired = errors.New("lock: not acquired")

	// ErrLeaseLost is the cause of a Lease's context when its backend can no
	// longer confirm that the lease holds the key: a renewal was refused, or
	// none succeeded before the lease's deadline.
	ErrLeaseLost = errors.New("lock: lease lost")

	// ErrExpired is the cause of a Lease's context when a lease that does not
	// renew itself reached its deadline. Extend returns it for such a lease.
	ErrExpired = errors.New("lock: lease expired")

	// ErrReleased is the cause of a Lease's context after Release.
	ErrReleased = errors.New("lock: lease released")

	// ErrNotHeld is returned by a Backend asked to extend or release a key
	// that the given owner does not hold, and by the methods of a nil Lease.
	ErrNotHeld = errors.New("lock: not held")

	// ErrClosed is returned by every call on a Mutex or Backend after Close,
	// and is the cause of the contexts of the leases Close ended.
	ErrClosed = errors.New("lock: closed")

	// ErrInvalid is matched by every error about a bad argument or option.
	// The error's message names the argument and its value.
	ErrInvalid = errors.New("lock: invalid argument")
)

// invalidf returns an error matching ErrInvalid that names the argument arg
// and its value; format says what is wrong with it.
func invalidf(arg string, value any, format string, a ...any) error {
	return &ArgError{Arg: arg, Value: fmt.Sprint(value), Reason: fmt.Sprintf(format, a...)}
}

// An ArgError reports a bad argument or option. It matches ErrInvalid.
type ArgError struct {
	Arg    string // the argument or option, such as "key" or "WithTTL"
	Value  string // its value, printed with fmt
	Reason string // what is wrong with it
}

// Error returns "lock: invalid argument: Arg Value: Reason".
func (e *ArgError) Error() string {
	return fmt.Sprintf("lock: invalid argument: %s %s: %s", e.Arg, e.Value, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *ArgError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns an *ArgError for backends that validate arguments of their
// own: it names the argument arg and its value, and matches ErrInvalid.
func Invalid(arg string, value any, reason string) error {
	return invalidf(arg, value, "%s", reason)
}
