package locktest

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/leaselock/lock"
)

// AcquireNS locks namespace + ":" + key, the same backend key as Acquire of
// that string; a call's WithNamespace overrides the Mutex's; AcquireNS
// without a namespace is ErrInvalid.
func testNamespace(s *suite) {
	t := s.t
	ns := strings.TrimSuffix(s.key("ns"), ":")
	m := s.mutex(lock.WithNamespace(ns))
	full := ns + ":x"

	l, err := m.AcquireNS(s.ctx, "x")
	if err != nil {
		t.Fatalf("AcquireNS(%q) err = %v, want nil", "x", err)
	}
	if got := l.Key(); got != full {
		t.Errorf("AcquireNS(%q).Key() = %q, want %q", "x", got, full)
	}
	s.expectHeld(m, full)
	s.expectFree(m, "x") // Acquire does not use the namespace
	s.release(l)

	l = s.acquire(s.ctx, m, full)
	if got := l.Key(); got != full {
		t.Errorf("Acquire(%q).Key() = %q", full, got)
	}
	if l2, err := m.AcquireNS(s.ctx, "x", lock.WithRetry(0)); !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("AcquireNS(%q) while %q is held err = %v, want ErrNotAcquired", "x", full, err)
		if l2 != nil {
			_ = l2.Release(s.ctx)
		}
	}
	s.release(l)

	other := ns + "2"
	l = s.acquire(s.ctx, m, full) // does not block the other namespace
	l2, err := m.AcquireNS(s.ctx, "x", lock.WithNamespace(other), lock.WithRetry(0))
	if err != nil {
		t.Errorf("AcquireNS(%q, WithNamespace(%q)) err = %v, want nil", "x", other, err)
	} else {
		if got := l2.Key(); got != other+":x" {
			t.Errorf("AcquireNS(%q, WithNamespace(%q)).Key() = %q, want %q", "x", other, got, other+":x")
		}
		s.release(l2)
	}
	s.release(l)

	plain := s.mutex()
	l, err = plain.AcquireNS(s.ctx, "x")
	if !errors.Is(err, lock.ErrInvalid) || !strings.Contains(strings.ToLower(fmtErr(err)), "namespace") {
		t.Errorf("AcquireNS without a namespace err = %v, want ErrInvalid naming the namespace", err)
	}
	if l != nil {
		t.Errorf("AcquireNS without a namespace returned a lease of %q", l.Key())
		_ = l.Release(s.ctx)
	}
}

// fmtErr returns err's message, or "" for nil.
func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

var errFn = errors.New("locktest: error of fn")

// WithLock runs fn under the key, with the lease's context, returns fn's
// error, and releases the key when fn returns; it does not run fn when the
// key cannot be had; its lease renews itself even when the Mutex's leases do
// not.
func testWithLock(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	var fnCtx context.Context
	calls := 0
	err := lock.WithLock(s.ctx, m, k, func(ctx context.Context) error {
		calls++
		fnCtx = ctx
		if err := ctx.Err(); err != nil {
			t.Errorf("fn's context done on entry: %v", context.Cause(ctx))
		}
		s.expectHeld(m, k)
		return errFn
	})
	if calls != 1 {
		t.Fatalf("WithLock called fn %d times, want 1", calls)
	}
	if !errors.Is(err, errFn) {
		t.Errorf("WithLock err = %v, want fn's error", err)
	}
	if !isClosed(fnCtx.Done()) || !errors.Is(context.Cause(fnCtx), lock.ErrReleased) {
		t.Errorf("fn's context after WithLock: done = %v, cause %v; want done, ErrReleased", isClosed(fnCtx.Done()), context.Cause(fnCtx))
	}
	s.expectFree(m, k)
	if err := lock.WithLock(s.ctx, m, k, func(context.Context) error { return nil }); err != nil {
		t.Errorf("WithLock with fn returning nil err = %v, want nil", err)
	}
	s.expectFree(m, k)

	// A held key: WithLock gives up with its context, without running fn.
	holder := s.acquire(s.ctx, m, k)
	ctx, cancel := context.WithTimeout(s.ctx, s.c.ttl/4)
	err = lock.WithLock(ctx, m, k, func(context.Context) error {
		t.Errorf("WithLock ran fn on a held key")
		return nil
	}, s.retryOpts()...)
	cancel()
	if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WithLock on a held key err = %v, want ErrNotAcquired and context.DeadlineExceeded", err)
	}
	s.release(holder)

	// Renewal, even when the Mutex's leases do not renew by default.
	ttl := s.c.ttl
	short := s.mutex(lock.WithTTL(ttl), lock.WithAutoExtend(false))
	err = lock.WithLock(s.ctx, short, k, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			t.Errorf("WithLock's lease ended within 2 TTLs: %v; want it renewed", context.Cause(ctx))
		case <-time.After(2 * ttl):
		}
		return nil
	})
	if err != nil {
		t.Errorf("WithLock over 2 TTLs err = %v, want nil", err)
	}
	s.expectFree(short, k)
}

// WithLock and Do release the key when fn panics, as a deferred
// sync.Mutex.Unlock would: a panic recovered further up, as net/http
// recovers a handler's, must not leave the key held for ever.
func testWithLockPanic(s *suite) {
	t := s.t
	m := s.mutex()
	for _, name := range []string{"WithLock", "Do"} {
		k := s.key(name)
		var fnCtx context.Context
		fn := func(ctx context.Context) error {
			fnCtx = ctx
			panic(errFn)
		}
		recovered := func() (r any) {
			defer func() { r = recover() }()
			if name == "WithLock" {
				_ = lock.WithLock(s.ctx, m, k, fn)
			} else {
				_, _ = lock.Do(s.ctx, m, k, func(ctx context.Context) (int, error) { return 0, fn(ctx) })
			}
			return nil
		}()
		if recovered != errFn {
			t.Errorf("%s: recovered %v, want fn's panic to propagate", name, recovered)
		}
		if fnCtx == nil {
			t.Errorf("%s did not run fn", name)
			continue
		}
		if !isClosed(fnCtx.Done()) {
			t.Errorf("%s: fn's context not done after fn panicked", name)
		}
		s.expectFree(m, k)
	}
}

// Do is WithLock with a result: it returns fn's value and error, and
// releases the key.
func testDo(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	v, err := lock.Do(s.ctx, m, k, func(ctx context.Context) (int, error) {
		s.expectHeld(m, k)
		return 42, nil
	})
	if v != 42 || err != nil {
		t.Errorf("Do() = %d, %v; want 42, nil", v, err)
	}
	s.expectFree(m, k)
	_, err = lock.Do(s.ctx, m, k, func(ctx context.Context) (string, error) {
		return "", errFn
	})
	if !errors.Is(err, errFn) {
		t.Errorf("Do() err = %v, want fn's error", err)
	}
	s.expectFree(m, k)
}
