package lock

import (
	"context"
	"time"
)

// A Backend stores locks. It makes single attempts; the Mutex in front of it
// owns everything else: retries, backoff and jitter, drift, the lease's
// context and its renewal. Package memory and package rueidislock provide
// backends.
//
// A Backend must be safe for concurrent use. Its methods must honour ctx,
// and must not keep ctx after they return.
type Backend interface {
	// Acquire makes one attempt to take req.Key for req.TTL. If the key is
	// held by another owner it returns a Result with Acquired false, and,
	// when known, the time until the holder's key expires. An error means the
	// backend could not decide; anything it set for the attempt must already
	// be undone, or be undone by Release with the same Request.
	Acquire(ctx context.Context, req Request) (Result, error)

	// Extend sets the TTL of req.Key, held by req.Owner with req.Token, to
	// req.TTL from now. It returns an error matching ErrNotHeld when the key
	// is no longer held by that owner; it never takes a free key.
	Extend(ctx context.Context, req Request) (Result, error)

	// Release frees req.Key if req.Owner with req.Token holds it, and
	// returns an error matching ErrNotHeld if not. It never frees another
	// owner's key.
	Release(ctx context.Context, req Request) error

	// Close releases the backend's resources. Calls after Close return an
	// error matching ErrClosed.
	Close() error
}

// A Waiter is a Backend that can wait for a key to become free instead of
// the Mutex sleeping between attempts: it wakes on a release (a direct
// hand-off in process, a notification from a server) or at the holder's
// expiry. The Mutex uses it when the Backend implements it.
type Waiter interface {
	// Wait makes attempts to take req.Key until it succeeds, until the key
	// may have become free, until d has elapsed, or until ctx is done. It
	// returns a Result with Acquired true if it took the key, and with
	// Acquired false if the Mutex should make its next attempt.
	// req.Handle is the Handle of the Result of the Mutex's last attempt,
	// so that a backend can tell what it may have missed since.
	Wait(ctx context.Context, req Request, d time.Duration) (Result, error)
}

// A Leaver is a Waiter that keeps something for a waiting Acquire between
// its attempts, such as its place in a queue on a server. The Mutex calls
// Leave once when an Acquire that waited ends without a lease (its context
// ended, its retries ran out, or the Mutex closed), so that a release does
// not go to a waiter that is gone while others sleep, and so that a key a
// backend handed over to the waiter meanwhile is freed before Acquire
// returns. req is the request of its last attempt. A Backend that wraps a
// Leaver must pass Leave on.
type Leaver interface {
	Leave(ctx context.Context, req Request)
}

// A Request describes one attempt, extension or release.
type Request struct {
	// Key is the backend key, namespace included.
	Key string

	// TTL is how long the key lives if it is not extended: a positive whole
	// number of milliseconds.
	TTL time.Duration

	// Owner is the proof of ownership the backend chose: empty on the first
	// attempt of an Acquire call, then the Owner of the previous Result, so
	// that a backend can recognise a key its own earlier attempt set.
	Owner string

	// Token is the fencing token of the holder, for Extend and Release.
	Token uint64

	// Drift is what the lease gives up at the end of its TTL for clock
	// drift: a grant is useful only until its Start + TTL - Drift, and a
	// backend may give up on an attempt then.
	Drift time.Duration

	// Since is when the caller began to wait, for Wait: backends that queue
	// waiters serve older waits first. For a Leaver, an Acquire that may
	// wait sets it from its first attempt on; a single attempt (TryAcquire)
	// leaves it zero.
	Since time.Time

	// Wait is how long the caller will wait after this attempt, if it is
	// refused, before it makes the next, unless the backend's Waiter serves
	// it sooner; zero if it will not wait. A backend that keeps something
	// for a waiter between attempts may keep it that long.
	Wait time.Duration

	// Handle is the Handle of the grant, for Extend and Release, and the
	// Handle of the last attempt's Result, for Wait.
	Handle any

	// Renew reports that the lease will be renewed for as long as it is
	// held. A backend in the caller's own process may then keep the key
	// without expiry until Release, and report Result.Pinned.
	Renew bool
}

// A Result is the outcome of an attempt or an extension.
type Result struct {
	// Acquired reports whether the key is held for the request's owner.
	Acquired bool

	// Token is the fencing token of the grant: it strictly increases across
	// the successive holders of a key.
	Token uint64

	// Owner is the proof of ownership to pass in later Requests.
	Owner string

	// Start is when the grant's TTL began to run, no later than when the
	// backend sent or made the change that took the key. It is required
	// unless Pinned is set.
	Start time.Time

	// Pinned reports that the backend holds the key until Release without
	// renewal, as the memory backend does for a Request with Renew set.
	Pinned bool

	// Handle is an optional value the backend gets back with the Requests
	// that extend or release the grant, such as a pointer to its state.
	Handle any

	// HolderTTL is, when Acquired is false, the time until the current
	// holder's key expires, or zero if unknown.
	HolderTTL time.Duration
}
