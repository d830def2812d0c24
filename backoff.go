package lock

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// A Backoff decides how long Acquire waits before each retry, as a pure
// function of the retry number: attempt is 1 before the first retry, 2 before
// the second, and so on. A Backoff is shared by concurrent calls and must be
// safe for concurrent use; one without state is.
//
// Acquire adds the jitter of WithJitter to the delay, and waits less when the
// backend can tell that the key may be free sooner: on a release, or at the
// end of the holder's TTL.
type Backoff interface {
	Delay(attempt int) time.Duration
}

// BackoffFunc adapts a function to the Backoff interface.
type BackoffFunc func(attempt int) time.Duration

// Delay returns f(attempt).
func (f BackoffFunc) Delay(attempt int) time.Duration { return f(attempt) }

// Constant returns a Backoff that waits d before every retry. It is the
// Backoff of WithDelay, and of the seed's retryDelay and delay settings.
func Constant(d time.Duration) Backoff { return constant(d) }

type constant time.Duration

func (c constant) Delay(int) time.Duration { return time.Duration(c) }

// Exponential returns a Backoff that waits initial before the first retry and
// doubles the wait before each further retry, up to max:
//
//	attempt  delay (initial 10ms, max 1s)
//	1        10ms
//	2        20ms
//	3        40ms
//	...
//	7        640ms
//	8+       1s
func Exponential(initial, max time.Duration) Backoff {
	return exponential{initial: initial, max: max}
}

type exponential struct{ initial, max time.Duration }

func (e exponential) Delay(attempt int) time.Duration {
	d := e.initial
	for i := 1; i < attempt && d < e.max; i++ {
		d *= 2
	}
	return min(d, e.max)
}

// jitter returns d plus a part of j chosen by r, which is uniform in [0, j)
// when r is uniform. Randomness is an argument so that tests can choose it.
func jitter(d, j time.Duration, r uint64) time.Duration {
	if j <= 0 {
		return d
	}
	return d + time.Duration(r%uint64(j))
}

// randomUint64 returns a uniform random number. It uses crypto/rand, which
// is fast on current systems, so that the package needs no second source of
// randomness; only waits, never the fast path, pay for it.
func randomUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24.
	return binary.LittleEndian.Uint64(b[:])
}
