package lock

import (
	"math"
	"time"
)

// Defaults of the options. Each can be changed for a Mutex by passing the
// option to New, and for one call by passing it to that call.
const (
	// DefaultTTL is how long a lease lives without renewal.
	DefaultTTL = 10 * time.Second

	// DefaultRetry is the number of retries after the first attempt: negative,
	// so Acquire waits until its context is done, like sync.Mutex.Lock.
	DefaultRetry = -1

	// DefaultDelay is the wait between attempts. Backends that can tell when
	// a key is freed (all of this module's) wake waiters sooner; the delay is
	// their fallback.
	DefaultDelay = 100 * time.Millisecond

	// DefaultJitter is the largest random time added to each delay, so that
	// waiters fall out of step.
	DefaultJitter = 50 * time.Millisecond

	// DefaultDriftFactor is the share of the TTL assumed lost to clock drift
	// between processes and servers; 2ms are added to it.
	DefaultDriftFactor = 0.01

	// DefaultAutoExtend is whether a lease renews itself until released.
	DefaultAutoExtend = true

	// MaxTTL is the largest TTL accepted.
	MaxTTL = 24 * time.Hour

	// MaxKeyLen is the length in bytes of the longest key accepted,
	// namespace included.
	MaxKeyLen = 1024

	// CleanupTimeout bounds the release of a key after the caller's context
	// ended, on a detached context: a cancelled Acquire undoing its grant, a
	// lease whose parent context ended, a Release called with a done context.
	CleanupTimeout = 5 * time.Second
)

// driftAbs is the fixed part of the drift: 1ms for the millisecond precision
// of expiry, 1ms for the least drift between two clocks.
const driftAbs = 2 * time.Millisecond

// An Option changes a setting of a Mutex (passed to New) or of one call
// (passed to Acquire, TryAcquire, AcquireNS, WithLock or Do).
type Option func(*settings)

// settings is what the options set. It is copied per call, so options of a
// call never change the Mutex.
type settings struct {
	ttl         time.Duration
	retry       int
	backoff     Backoff
	jitter      time.Duration
	driftFactor float64
	autoExtend  bool
	namespace   string
	obs         observers // WithLogger and WithObserver; see observe.go
}

func defaultSettings() settings {
	return settings{
		ttl:         DefaultTTL,
		retry:       DefaultRetry,
		backoff:     Constant(DefaultDelay),
		jitter:      DefaultJitter,
		driftFactor: DefaultDriftFactor,
		autoExtend:  DefaultAutoExtend,
	}
}

// WithTTL sets how long a lease lives without renewal; renewal extends it by
// ttl at a time. It is rounded up to whole milliseconds, must leave time
// after the drift, and may be at most MaxTTL. Default: DefaultTTL.
func WithTTL(ttl time.Duration) Option {
	return func(s *settings) { s.ttl = ttl }
}

// WithRetry sets how many more attempts Acquire makes after the first one
// fails: 0 makes Acquire behave as TryAcquire, and a negative n retries until
// the context is done. Default: DefaultRetry.
//
// A backend that waits for releases (a Waiter, as rueidislock is) may make
// one attempt of its own when it starts to listen, so that a release just
// before is not missed: an Acquire call then makes at most n+2 attempts.
func WithRetry(n int) Option {
	return func(s *settings) { s.retry = n }
}

// WithDelay makes Acquire wait d between attempts, as WithBackoff(Constant(d)).
// Default: DefaultDelay.
func WithDelay(d time.Duration) Option {
	return func(s *settings) { s.backoff = Constant(d) }
}

// WithJitter adds a random time in [0, d) to each wait between attempts.
// Default: DefaultJitter.
func WithJitter(d time.Duration) Option {
	return func(s *settings) { s.jitter = d }
}

// WithBackoff sets the waits between attempts. Default: Constant(DefaultDelay).
func WithBackoff(b Backoff) Option {
	return func(s *settings) { s.backoff = b }
}

// WithDriftFactor sets the share of the TTL assumed lost to clock drift: a
// lease's deadline is its start plus TTL minus (TTL*f + 2ms), so that its
// context ends before any server lets the key expire. f must be in [0, 1).
// Default: DefaultDriftFactor.
func WithDriftFactor(f float64) Option {
	return func(s *settings) { s.driftFactor = f }
}

// WithAutoExtend sets whether a lease renews itself every TTL/3 until it is
// released. A lease that does not renew itself ends at its deadline with
// ErrExpired unless extended with Lease.Extend. WithLock and Do always renew.
// Default: DefaultAutoExtend.
func WithAutoExtend(on bool) Option {
	return func(s *settings) { s.autoExtend = on }
}

// WithNamespace sets the namespace that AcquireNS puts before keys, with a
// colon between them, as the seed's lockNs does: namespace "app" and key "job"
// lock the backend key "app:job". Acquire and TryAcquire do not use it.
// Default: none.
func WithNamespace(ns string) Option {
	return func(s *settings) { s.namespace = ns }
}

// validate checks the settings and rounds the TTL up to whole milliseconds,
// the precision of Redis's PX.
func (s *settings) validate() error {
	if math.IsNaN(s.driftFactor) || s.driftFactor < 0 || s.driftFactor >= 1 {
		return invalidf("WithDriftFactor", s.driftFactor, "must be in [0, 1)")
	}
	ttl, err := checkTTL("WithTTL", s.ttl, s.driftFactor)
	if err != nil {
		return err
	}
	s.ttl = ttl
	if s.backoff == nil {
		return invalidf("WithBackoff", nil, "must not be nil")
	}
	d := s.backoff.Delay(1)
	if d < 0 {
		return invalidf("WithDelay or WithBackoff", d, "must not be negative")
	}
	if s.jitter < 0 {
		return invalidf("WithJitter", s.jitter, "must not be negative")
	}
	if d == 0 && s.jitter == 0 && s.retry != 0 {
		return invalidf("WithDelay or WithBackoff", d, "with no jitter would retry without pause")
	}
	return nil
}

// checkTTL checks a TTL, given as the argument arg, and returns it rounded
// up to whole milliseconds, the precision of Redis's PX.
func checkTTL(arg string, ttl time.Duration, driftFactor float64) (time.Duration, error) {
	if ttl <= 0 {
		return 0, invalidf(arg, ttl, "must be positive")
	}
	if ttl > MaxTTL {
		return 0, invalidf(arg, ttl, "must be at most %v", MaxTTL)
	}
	ttl = (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
	if d := drift(ttl, driftFactor); ttl-d <= 0 {
		return 0, invalidf(arg, ttl, "leaves no time after the drift of %v", d)
	}
	return ttl, nil
}

// drift is the time a lease gives up at the end of its TTL for clock drift.
func drift(ttl time.Duration, factor float64) time.Duration {
	return time.Duration(float64(ttl)*factor) + driftAbs
}

// delay returns the wait before retry number attempt, jitter included.
func (s *settings) delay(attempt int) time.Duration {
	d := max(s.backoff.Delay(attempt), 0)
	if s.jitter > 0 {
		d = jitter(d, s.jitter, randomUint64())
	}
	return d
}
