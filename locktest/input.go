package locktest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/leaselock/lock"
)

// nilCtx is a nil context, passed where callers must not pass one.
var nilCtx context.Context

// badOptions are option sets that every call taking options must refuse,
// each with the name its error must give.
var badOptions = []struct {
	name string
	arg  string
	opts []lock.Option
}{
	{"WithTTL(0)", "WithTTL", []lock.Option{lock.WithTTL(0)}},
	{"WithTTL(-1)", "WithTTL", []lock.Option{lock.WithTTL(-1)}},
	{"WithTTL(1ms)", "WithTTL", []lock.Option{lock.WithTTL(time.Millisecond)}}, // nothing left after the drift
	{"WithTTL(MaxTTL+1ms)", "WithTTL", []lock.Option{lock.WithTTL(lock.MaxTTL + time.Millisecond)}},
	{"WithDriftFactor(-0.1)", "WithDriftFactor", []lock.Option{lock.WithDriftFactor(-0.1)}},
	{"WithDriftFactor(1)", "WithDriftFactor", []lock.Option{lock.WithDriftFactor(1)}},
	{"WithDriftFactor(NaN)", "WithDriftFactor", []lock.Option{lock.WithDriftFactor(math.NaN())}},
	{"WithDriftFactor(+Inf)", "WithDriftFactor", []lock.Option{lock.WithDriftFactor(math.Inf(1))}},
	{"WithJitter(-1)", "WithJitter", []lock.Option{lock.WithJitter(-1)}},
	{"WithDelay(-1)", "WithDelay", []lock.Option{lock.WithDelay(-1)}},
	{"WithBackoff(nil)", "WithBackoff", []lock.Option{lock.WithBackoff(nil)}},
	{"WithDelay(0),WithJitter(0)", "WithDelay", []lock.Option{lock.WithDelay(0), lock.WithJitter(0)}},
}

// G8: every bad argument is an error matching ErrInvalid that names it,
// never a panic, and the call holds nothing.
func testBadInput(s *suite) {
	t := s.t
	ns := strings.TrimSuffix(s.key("ns"), ":")
	m := s.mutex(lock.WithNamespace(ns))
	tooLong := strings.Repeat("k", lock.MaxKeyLen+1)
	nsTooLong := strings.Repeat("k", lock.MaxKeyLen-len(ns)) // fits alone, not with the namespace
	fn := func(context.Context) error {
		t.Errorf("fn ran despite a bad argument")
		return nil
	}
	fnInt := func(context.Context) (int, error) {
		t.Errorf("fn ran despite a bad argument")
		return 0, nil
	}
	// entries are the calls that take a context, a key and options; key is
	// relative to the namespace for AcquireNS.
	entries := []struct {
		name string
		call func(ctx context.Context, key string, opts ...lock.Option) error
	}{
		{"Acquire", func(ctx context.Context, key string, opts ...lock.Option) error {
			return leaseErr(s, m.Acquire)(ctx, key, opts...)
		}},
		{"TryAcquire", func(ctx context.Context, key string, opts ...lock.Option) error {
			return leaseErr(s, m.TryAcquire)(ctx, key, opts...)
		}},
		{"AcquireNS", func(ctx context.Context, key string, opts ...lock.Option) error {
			return leaseErr(s, m.AcquireNS)(ctx, key, opts...)
		}},
		{"WithLock", func(ctx context.Context, key string, opts ...lock.Option) error {
			return lock.WithLock(ctx, m, key, fn, opts...)
		}},
		{"Do", func(ctx context.Context, key string, opts ...lock.Option) error {
			_, err := lock.Do(ctx, m, key, fnInt, opts...)
			return err
		}},
	}

	// Each call gets a key of its own, so that a call that wrongly holds
	// its key fails alone.
	type badCall struct {
		name string
		arg  string // named by the error, ignoring case
		call func(k string) error
	}
	var calls []badCall
	for _, e := range entries {
		calls = append(calls,
			badCall{e.name + "(nil ctx)", "ctx", func(k string) error { return e.call(nilCtx, k) }},
			badCall{e.name + `(key "")`, "key", func(string) error { return e.call(s.ctx, "") }},
			badCall{e.name + "(key of MaxKeyLen+1 bytes)", "key", func(string) error { return e.call(s.ctx, tooLong) }},
		)
		for _, o := range badOptions {
			calls = append(calls, badCall{e.name + "(" + o.name + ")", o.arg, func(k string) error {
				return e.call(s.ctx, k, o.opts...)
			}})
		}
	}
	calls = append(calls,
		badCall{"AcquireNS(namespace+key of MaxKeyLen+1 bytes)", "key", func(string) error {
			return leaseErr(s, m.AcquireNS)(s.ctx, nsTooLong)
		}},
		badCall{"WithLock(nil fn)", "fn", func(k string) error { return lock.WithLock(s.ctx, m, k, nil) }},
		badCall{"Do(nil fn)", "fn", func(k string) error {
			_, err := lock.Do[int](s.ctx, m, k, nil)
			return err
		}},
		badCall{"WithLock(nil Mutex)", "m", func(k string) error { return lock.WithLock(s.ctx, nil, k, fn) }},
		badCall{"Do(nil Mutex)", "m", func(k string) error {
			_, err := lock.Do(s.ctx, nil, k, fnInt)
			return err
		}},
		badCall{"New(nil).Acquire", "backend", func(k string) error {
			nm := lock.New(nil)
			defer nm.Close()
			return leaseErr(s, nm.Acquire)(s.ctx, k)
		}},
	)
	// Lease methods: the lease must still hold its key after a bad call.
	leaseCall := func(f func(l *lock.Lease) error) func(string) error {
		return func(k string) error {
			l, err := m.Acquire(s.ctx, k)
			if err != nil {
				t.Errorf("Acquire(%q) err = %v", k, err)
				return nil
			}
			defer s.release(l)
			err = f(l)
			if lerr := l.Err(); lerr != nil {
				t.Errorf("the lease ended after a bad call: %v", lerr)
			}
			return err
		}
	}
	calls = append(calls,
		badCall{"Lease.Extend(nil ctx)", "ctx", leaseCall(func(l *lock.Lease) error { return l.Extend(nilCtx, time.Second) })},
		badCall{"Lease.Release(nil ctx)", "ctx", leaseCall(func(l *lock.Lease) error { return l.Release(nilCtx) })},
		badCall{"Lease.Extend(0)", "TTL", leaseCall(func(l *lock.Lease) error { return l.Extend(s.ctx, 0) })},
		badCall{"Lease.Extend(-1)", "TTL", leaseCall(func(l *lock.Lease) error { return l.Extend(s.ctx, -1) })},
		badCall{"Lease.Extend(MaxTTL+1ms)", "TTL", leaseCall(func(l *lock.Lease) error {
			return l.Extend(s.ctx, lock.MaxTTL+time.Millisecond)
		})},
	)

	for i, c := range calls {
		k := s.key(fmt.Sprint("k", i))
		s.checkInvalid(c.name, c.arg, func() error { return c.call(k) })
		// Held nothing: the key and its namespaced twin are free.
		s.expectFree(m, k)
		s.expectFree(m, ns+":"+k)
	}

	// Bad defaults given to New make every call fail, naming the option.
	k := s.key("k")
	for _, o := range badOptions {
		bm := s.mutex(o.opts...)
		s.checkInvalid("New("+o.name+").Acquire", o.arg, func() error {
			return leaseErr(s, bm.Acquire)(s.ctx, k)
		})
		s.checkInvalid("New("+o.name+").TryAcquire", o.arg, func() error {
			return leaseErr(s, bm.TryAcquire)(s.ctx, k, lock.WithTTL(time.Second))
		})
	}
}

// leaseErr adapts an acquiring method to return only its error, releasing
// a lease it should not have returned.
func leaseErr(s *suite, f func(context.Context, string, ...lock.Option) (*lock.Lease, error)) func(context.Context, string, ...lock.Option) error {
	return func(ctx context.Context, key string, opts ...lock.Option) error {
		l, err := f(ctx, key, opts...)
		if l != nil {
			s.t.Errorf("a call with a bad argument returned a lease of %q", l.Key())
			_ = l.Release(s.ctx)
		}
		return err
	}
}

// checkInvalid checks that f returns an error matching ErrInvalid that
// names arg (ignoring case), and does not panic.
func (s *suite) checkInvalid(what, arg string, f func() error) {
	t := s.t
	t.Helper()
	var err error
	if !noPanic(t, what, func() { err = f() }) {
		return
	}
	if !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("%s err = %v, want ErrInvalid (G8)", what, err)
		return
	}
	lower := strings.ToLower(arg)
	if !strings.Contains(strings.ToLower(err.Error()), lower) {
		t.Errorf("%s err = %q, want it to name %s", what, err, arg)
	}
	var ae *lock.ArgError
	if errors.As(err, &ae) && !strings.Contains(strings.ToLower(ae.Arg), lower) {
		t.Errorf("%s: ArgError.Arg = %q, want %s", what, ae.Arg, arg)
	}
}

// Values at the edge of the valid ranges are accepted, and distinct keys,
// however odd their bytes, are distinct locks: each is accepted byte for
// byte or refused with ErrInvalid.
func testBoundaries(s *suite) {
	t := s.t
	ns := strings.TrimSuffix(s.key("ns"), ":")
	m := s.mutex(lock.WithNamespace(ns))
	k := s.key("k")
	ok := []struct {
		name string
		call func() (*lock.Lease, error)
	}{
		{"key of MaxKeyLen bytes", func() (*lock.Lease, error) {
			return m.Acquire(s.ctx, k+strings.Repeat("k", lock.MaxKeyLen-len(k)))
		}},
		{"namespace+key of MaxKeyLen bytes", func() (*lock.Lease, error) {
			return m.AcquireNS(s.ctx, strings.Repeat("k", lock.MaxKeyLen-len(ns)-1))
		}},
		{"WithTTL(MaxTTL)", func() (*lock.Lease, error) {
			return m.Acquire(s.ctx, k, lock.WithTTL(lock.MaxTTL), lock.WithAutoExtend(false))
		}},
		{"WithDriftFactor(0)", func() (*lock.Lease, error) { return m.Acquire(s.ctx, k, lock.WithDriftFactor(0)) }},
		{"WithDriftFactor(0.5)", func() (*lock.Lease, error) { return m.Acquire(s.ctx, k, lock.WithDriftFactor(0.5)) }},
		{"WithRetry(-5)", func() (*lock.Lease, error) { return m.Acquire(s.ctx, k, lock.WithRetry(-5)) }},
		{"WithDelay(0),WithJitter(1ms)", func() (*lock.Lease, error) {
			return m.Acquire(s.ctx, k, lock.WithDelay(0), lock.WithJitter(time.Millisecond))
		}},
		{"WithDelay(0),WithJitter(0),WithRetry(0)", func() (*lock.Lease, error) {
			return m.Acquire(s.ctx, k, lock.WithDelay(0), lock.WithJitter(0), lock.WithRetry(0))
		}},
		{"nil Option", func() (*lock.Lease, error) { return m.Acquire(s.ctx, k, nil) }},
	}
	for _, c := range ok {
		var l *lock.Lease
		var err error
		if !noPanic(t, c.name, func() { l, err = c.call() }) {
			continue
		}
		if err != nil {
			t.Errorf("%s: err = %v, want nil", c.name, err)
			continue
		}
		if err := l.Err(); err != nil {
			t.Errorf("%s: Err() = %v, want nil", c.name, err)
		}
		s.release(l)
	}

	// Odd keys: all held at once, so no two alias one backend key.
	odd := []string{"k", "k\x00", "k\x00x", "k\r\n", "k\n", "{k}", "k:", ":k", "K", "k ", " k", "ключ", "k\xff\xfe", "*", "k*"}
	var held []*lock.Lease
	for _, o := range odd {
		key := k + o
		var l *lock.Lease
		var err error
		if !noPanic(t, "TryAcquire of an odd key", func() { l, err = m.TryAcquire(s.ctx, key) }) {
			continue
		}
		switch {
		case errors.Is(err, lock.ErrInvalid):
			t.Logf("key %q refused: %v", key, err)
		case err != nil:
			t.Errorf("TryAcquire(%q) err = %v: a distinct key aliases another", key, err)
		default:
			if l.Key() != key {
				t.Errorf("TryAcquire(%q).Key() = %q", key, l.Key())
			}
			held = append(held, l)
		}
	}
	for _, l := range held {
		s.release(l)
	}
}
