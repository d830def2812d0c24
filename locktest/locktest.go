// Package locktest checks that a [lock.Backend] keeps the guarantees of
// package lock, as testing/fstest checks a file system. The tests of a backend
// call [Run] with a function that makes a fresh backend:
//
//	func TestConformance(t *testing.T) {
//		locktest.Run(t, func(t *testing.T) lock.Backend {
//			return memory.New()
//		})
//	}
//
// Run drives the backend through a [lock.Mutex], with the public API of
// package lock only, so it checks the backend and the Mutex in front of it
// together: exclusion, waking, expiry, renewal, fencing, release, Close, and
// bad input. Every subtest uses keys of its own, so a backend on a shared
// server may keep state between subtests.
//
// The oracles that the exclusion tests use are exported for tests of
// faults: [History] records when each lease of a key was held, [CheckOverlap]
// and [CheckTokens] check the record, [FencedStore] is a storage that
// accepts only newer fencing tokens, and [Counter] detects lost updates.
//
// Run does not check for leaked goroutines after the whole suite: put
// goleak.VerifyTestMain (go.uber.org/goleak) in the TestMain of the package
// that calls it. Some subtests count the goroutines of the process, so do
// not call Run from a parallel test.
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/leaselock/lock"
)

// DefaultTTL is the short TTL of the tests of expiry and renewal.
const DefaultTTL = 200 * time.Millisecond

// DefaultEpsilon is how late, after its deadline, the end of a lease that
// does not renew itself may be observed: room for the lateness of a timer
// and of the scheduler on a loaded machine, which is usually under 2ms.
// Safety does not rest on it: the suite also checks that no one else gets
// the key before the deadline, and that Err reports the end from the
// deadline on.
const DefaultEpsilon = 20 * time.Millisecond

// An Option changes how Run tests a backend.
type Option func(*config)

type config struct {
	ttl     time.Duration
	epsilon time.Duration
	polling bool
}

// WithTTL sets the short TTL of the tests of expiry and renewal, and scales
// every bound of the suite with it. Raise it for a backend over a slow
// network. Default: DefaultTTL.
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.ttl = d }
}

// WithEpsilon sets how late, after its deadline, the end of a lease may be
// observed. Default: DefaultEpsilon.
func WithEpsilon(d time.Duration) Option {
	return func(c *config) { c.epsilon = d }
}

// WithPolling tells Run that the backend cannot wake a waiter when a key is
// released, so that waiters find a free key only by retrying. Run then
// retries often, and skips the checks that a release wakes a waiter at once.
// Default: the backend wakes waiters, as guarantee G6 asks.
func WithPolling() Option {
	return func(c *config) { c.polling = true }
}

// Run runs the conformance suite against backends made by newBackend. Each
// subtest gets a fresh backend, with a fresh lock.Mutex over it that the
// subtest closes, and so closes the backend. newBackend may call t.Fatal or
// t.Skip, and register cleanups with t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) lock.Backend, opts ...Option) {
	t.Helper()
	c := config{ttl: DefaultTTL, epsilon: DefaultEpsilon}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.ttl < 20*time.Millisecond || c.ttl > time.Minute {
		t.Fatalf("locktest: WithTTL(%v): must be in [20ms, 1m]", c.ttl)
	}
	if c.epsilon < 0 {
		t.Fatalf("locktest: WithEpsilon(%v): must not be negative", c.epsilon)
	}
	if newBackend == nil {
		t.Fatal("locktest: newBackend must not be nil")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(newSuite(t, c, newBackend))
		})
	}
}

// tests are the subtests of Run, in the order they run.
var tests = []struct {
	name string
	fn   func(*suite)
}{
	{"Exclusion/OneKey", testExclusionOneKey},
	{"Exclusion/FewKeys", testExclusionFewKeys},
	{"TryAcquire", testTryAcquire},
	{"HandOff", testHandOff},
	{"CancelWaiter", testCancelWaiter},
	{"CancelWaiterRace", testCancelWaiterRace},
	{"WaitDeadline", testWaitDeadline},
	{"Retry", testRetry},
	{"Expiry", testExpiry},
	{"Extend", testExtend},
	{"AutoExtend", testAutoExtend},
	{"ParentCancel", testParentCancel},
	{"Fencing", testFencing},
	{"Release", testRelease},
	{"NilLease", testNilLease},
	{"Namespace", testNamespace},
	{"WithLock", testWithLock},
	{"Do", testDo},
	{"WithLockPanic", testWithLockPanic},
	{"Goroutines", testGoroutines},
	{"Close", testClose},
	{"BadInput", testBadInput},
	{"Boundaries", testBoundaries},
}

// suite is the fixture of one subtest.
type suite struct {
	t          *testing.T
	c          config
	newBackend func(*testing.T) lock.Backend
	prefix     string          // of every key of the subtest
	ctx        context.Context // bounds the subtest
}

func newSuite(t *testing.T, c config, newBackend func(*testing.T) lock.Backend) *suite {
	var b [6]byte
	_, _ = rand.Read(b[:])
	s := &suite{t: t, c: c, newBackend: newBackend, prefix: "locktest:" + hex.EncodeToString(b[:]) + ":"}
	// A subtest that hangs fails at this timeout instead of blocking the
	// whole test binary. Cleanups run last in, first out: the Mutexes made
	// later are closed before ctx is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.bound())
	t.Cleanup(cancel)
	s.ctx = ctx
	return s
}

// bound is the longest wait for something that should happen soon. Only a
// failing test waits that long.
func (s *suite) bound() time.Duration { return time.Second + 10*s.c.ttl }

// key returns a key of this subtest.
func (s *suite) key(name string) string { return s.prefix + name }

// backend returns a fresh backend.
func (s *suite) backend() lock.Backend {
	s.t.Helper()
	b := s.newBackend(s.t)
	if b == nil {
		s.t.Fatal("locktest: newBackend returned nil")
	}
	return b
}

// mutex returns a Mutex over a fresh backend, closed when the subtest ends.
func (s *suite) mutex(opts ...lock.Option) *lock.Mutex {
	s.t.Helper()
	m := lock.New(s.backend(), opts...)
	s.t.Cleanup(func() { _ = m.Close() })
	return m
}

// hookedMutex is mutex with hooks between the Mutex and the backend.
func (s *suite) hookedMutex(opts ...lock.Option) (*lock.Mutex, *hooks) {
	s.t.Helper()
	h := newHooks()
	m := lock.New(h.wrap(s.backend()), opts...)
	s.t.Cleanup(func() { _ = m.Close() })
	return m, h
}

// retryOpts make a waiter retry often: for tests that need a waiter to get
// a key, whether or not the backend wakes it.
func (s *suite) retryOpts() []lock.Option {
	return []lock.Option{lock.WithDelay(s.c.ttl / 20), lock.WithJitter(s.c.ttl / 20)}
}

// wakeOpts make a waiter that never retries by itself within the subtest,
// so that it gets a key only if the backend wakes it, unless the backend
// was declared polling.
func (s *suite) wakeOpts() []lock.Option {
	if s.c.polling {
		return s.retryOpts()
	}
	return []lock.Option{lock.WithDelay(time.Hour), lock.WithJitter(0)}
}

// acquire acquires key or ends the subtest.
func (s *suite) acquire(ctx context.Context, m *lock.Mutex, key string, opts ...lock.Option) *lock.Lease {
	s.t.Helper()
	l, err := m.Acquire(ctx, key, opts...)
	if err != nil {
		s.t.Fatalf("Acquire(%q) err = %v, want nil", key, err)
	}
	if l == nil {
		s.t.Fatalf("Acquire(%q) = nil, nil", key)
	}
	return l
}

// release releases l and reports an error.
func (s *suite) release(l *lock.Lease) {
	s.t.Helper()
	if err := l.Release(s.ctx); err != nil {
		s.t.Errorf("Release(%q) err = %v, want nil", l.Key(), err)
	}
}

// expectHeld checks that key is held: TryAcquire fails with ErrNotAcquired.
func (s *suite) expectHeld(m *lock.Mutex, key string) {
	s.t.Helper()
	l, err := m.TryAcquire(s.ctx, key)
	if err == nil {
		s.t.Errorf("TryAcquire(%q) of a held key succeeded (token %d), want ErrNotAcquired", key, l.Token())
		_ = l.Release(s.ctx)
		return
	}
	if !errors.Is(err, lock.ErrNotAcquired) {
		s.t.Errorf("TryAcquire(%q) of a held key err = %v, want ErrNotAcquired", key, err)
	}
	if l != nil {
		s.t.Errorf("TryAcquire(%q) returned a lease with its error %v", key, err)
	}
}

// expectFree checks that key is free at once: TryAcquire succeeds. It
// returns the token of the lease it took, and releases it.
func (s *suite) expectFree(m *lock.Mutex, key string) uint64 {
	s.t.Helper()
	l, err := m.TryAcquire(s.ctx, key)
	if err != nil {
		s.t.Errorf("TryAcquire(%q) of a free key err = %v, want nil", key, err)
		return 0
	}
	s.release(l)
	return l.Token()
}

// await waits for ch within the suite's bound, and reports whether it was
// closed or received from.
func (s *suite) await(ch <-chan struct{}, what string) bool {
	s.t.Helper()
	t := time.NewTimer(s.bound())
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		s.t.Errorf("%s: not within %v", what, s.bound())
		return false
	}
}

// isClosed reports whether ch is closed (or ready) now.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// result is what an Acquire call in another goroutine returned.
type result struct {
	l       *lock.Lease
	err     error
	at      time.Time // when Acquire returned
	prevErr error     // the previous holder's Err() when Acquire returned
}

// goAcquire calls m.Acquire in a new goroutine, and sends its result on the
// returned channel, buffered so that the goroutine never blocks. If prev is
// not nil, the result records prev.Err() as soon as Acquire returns.
func goAcquire(ctx context.Context, m *lock.Mutex, key string, prev *lock.Lease, opts ...lock.Option) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := m.Acquire(ctx, key, opts...)
		r := result{l: l, err: err, at: time.Now()}
		if prev != nil {
			r.prevErr = prev.Err()
		}
		ch <- r
	}()
	return ch
}

// awaitResult waits for an Acquire started by goAcquire, within the suite's
// bound.
func (s *suite) awaitResult(ch <-chan result, what string) (result, bool) {
	s.t.Helper()
	t := time.NewTimer(s.bound())
	defer t.Stop()
	select {
	case r := <-ch:
		return r, true
	case <-t.C:
		s.t.Errorf("%s: Acquire did not return within %v", what, s.bound())
		return result{}, false
	}
}
