package locktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// G7: no goroutine outlives Release, a lease whose parent ended, a failed
// or cancelled Acquire, WithLock, Do, or a History span.
func testGoroutines(s *suite) {
	t := s.t
	m, hk := s.hookedMutex(s.retryOpts()...)
	k := s.key("k")
	// The backend may start goroutines of its own on first use, such as
	// connections, including those that wake waiters: those are not leaks.
	s.expectFree(m, k)
	s.release(s.acquire(s.ctx, m, k, lock.WithAutoExtend(false)))
	h := s.acquire(s.ctx, m, k)
	s.expectHeld(m, k)
	// Counted before the waiter starts: its attempt may fail before the
	// count would otherwise be read, and the wait would be for one more.
	failed := hk.failureCount(k)
	warm := goAcquire(s.ctx, m, k, nil, s.wakeOpts()...)
	s.await(hk.failedAttempts(k, failed+1), "warm-up waiter's first attempt")
	s.release(h)
	if r, ok := s.awaitResult(warm, "warm-up waiter"); ok && r.err == nil {
		s.release(r.l)
	}
	base := runtime.NumGoroutine()

	var hist History
	for i := range 3 {
		// Held and released, with every kind of lease context.
		l := s.acquire(context.Background(), m, k)
		_ = l.Done()
		s.release(l)
		ctx, cancel := context.WithCancel(s.ctx)
		l = s.acquire(ctx, m, k, lock.WithTTL(s.c.ttl))
		sp := hist.Acquired("g", l)
		sp.End()
		s.release(l)
		cancel()
		l = s.acquire(s.ctx, m, k, lock.WithTTL(s.c.ttl), lock.WithAutoExtend(false))
		_ = l.Done()
		s.release(l)

		// Ended by the parent, then released.
		pctx, pcancel := context.WithCancel(s.ctx)
		l = s.acquire(pctx, m, k)
		pcancel()
		s.await(l.Done(), "lease after its parent's end")
		if err := l.Release(s.ctx); err != nil {
			t.Errorf("Release after the parent ended err = %v", err)
		}

		// Failed attempts: TryAcquire, a cancelled waiter, a timeout.
		holder := s.acquire(s.ctx, m, k)
		if l, err := m.TryAcquire(s.ctx, k); err == nil {
			t.Errorf("TryAcquire of a held key succeeded")
			_ = l.Release(s.ctx)
		}
		wctx, wcancel := context.WithCancel(s.ctx)
		failed := hk.failureCount(k)
		ch := goAcquire(wctx, m, k, nil, s.wakeOpts()...)
		s.await(hk.failedAttempts(k, failed+1), "waiter's first attempt")
		wcancel()
		if r, ok := s.awaitResult(ch, "cancelled waiter"); ok && r.err == nil {
			t.Errorf("cancelled waiter got a held key")
		}
		tctx, tcancel := context.WithTimeout(s.ctx, time.Millisecond)
		if l, err := m.Acquire(tctx, k); err == nil {
			t.Errorf("Acquire of a held key with a 1ms timeout succeeded")
			_ = l.Release(s.ctx)
		}
		tcancel()
		s.release(holder)

		// WithLock and Do.
		if err := lock.WithLock(s.ctx, m, k, func(context.Context) error { return nil }); err != nil {
			t.Errorf("WithLock err = %v", err)
		}
		if _, err := lock.Do(s.ctx, m, fmt.Sprint(k, i), func(context.Context) (int, error) { return 0, errFn }); !errors.Is(err, errFn) {
			t.Errorf("Do err = %v, want fn's error", err)
		}
	}
	s.expectGoroutines(base, "after Release and failed Acquire calls")
}

// Close ends every lease held through the Mutex with ErrClosed, whatever
// its parent context and renewal, wakes waiters with ErrClosed (also those
// of another Mutex of the same backend, which it closes), makes every
// later call return ErrClosed, is idempotent, and leaves no goroutine.
func testClose(s *suite) {
	t := s.t
	ns := s.key("ns")
	b := s.backend()
	hk := newHooks()
	m := lock.New(hk.wrap(b), lock.WithNamespace(ns))
	t.Cleanup(func() { _ = m.Close() })
	// Another client of the same backend, which Close of m does not end: a
	// waiter on its key is woken only by the closing of m and its backend,
	// and one of its own waiters only by the closing of the backend.
	ohk := newHooks()
	other := lock.New(ohk.wrap(b))
	t.Cleanup(func() { _ = other.Close() }) // ends its lease and that lease's renewal
	s.expectFree(m, s.key("warm"))
	s.expectFree(other, s.key("warm"))
	base := runtime.NumGoroutine()

	pctx, pcancel := context.WithCancel(s.ctx)
	defer pcancel()
	long := 50 * s.c.ttl
	type held struct {
		name string
		l    *lock.Lease
		ctx  context.Context // nil: not asked for before Close
	}
	var leases []held
	add := func(name string, ctx context.Context, watch bool, opts ...lock.Option) {
		l := s.acquire(ctx, m, s.key(name), opts...)
		h := held{name: name, l: l}
		if watch {
			h.ctx = l.Context()
		}
		leases = append(leases, h)
	}
	add("renew,background", context.Background(), true)
	add("renew,cancellable", pctx, true)
	add("fixed,background", context.Background(), true, lock.WithAutoExtend(false), lock.WithTTL(long))
	add("fixed,cancellable", pctx, true, lock.WithAutoExtend(false), lock.WithTTL(long))
	add("renew,background,unwatched", context.Background(), false)
	add("fixed,background,unwatched", context.Background(), false, lock.WithAutoExtend(false), lock.WithTTL(long))
	// Held for longer than the test's bound: the holder's TTL, which bounds
	// a waiter's sleep, cannot be what ends its wait.
	otherKey := s.key("other")
	ol := s.acquire(context.Background(), other, otherKey, lock.WithAutoExtend(false), lock.WithTTL(long))

	type waiter struct {
		what string
		ch   <-chan result
	}
	var waiters []waiter
	for _, w := range []struct {
		what string
		m    *lock.Mutex
		hk   *hooks
		key  string
	}{
		{"waiting on a key held through the closed Mutex", m, hk, s.key(leases[0].name)},
		{"waiting on a key held by another client", m, hk, otherKey},
		{"of another client of the backend, waiting on its own key", other, ohk, otherKey},
	} {
		failed := w.hk.failureCount(w.key)
		ch := goAcquire(s.ctx, w.m, w.key, nil, s.wakeOpts()...)
		if !s.await(w.hk.failedAttempts(w.key, failed+1), "first attempt of the Acquire "+w.what) {
			return
		}
		waiters = append(waiters, waiter{w.what, ch})
	}

	// Close frees the keys of the leases it ends, and so may wake the
	// waiter on leases[0]'s key, or hand it the key, before the backend is
	// closed. Let the backend's Close wait for that (as a backend whose
	// Close takes time would), so that the race always happens: the waiter
	// must still get ErrClosed, not a lease of a closed Mutex.
	if _, ok := b.(lock.Waiter); ok {
		woken := make(chan struct{})
		var once sync.Once
		hk.setAfterWait(func(key string) {
			if key == s.key(leases[0].name) {
				once.Do(func() { close(woken) })
			}
		})
		hk.setBeforeClose(func() {
			select {
			case <-woken:
			case <-time.After(s.bound()):
			}
		})
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close err = %v, want nil", err)
	}
	for _, h := range leases {
		if h.ctx != nil && !s.await(h.ctx.Done(), "lease "+h.name+" after Close") {
			continue
		}
		ctx := h.l.Context()
		if !isClosed(ctx.Done()) {
			t.Errorf("lease %s: context not done after Close", h.name)
		}
		if err := context.Cause(ctx); !errors.Is(err, lock.ErrClosed) {
			t.Errorf("lease %s: context.Cause = %v after Close, want ErrClosed", h.name, err)
		}
		if err := h.l.Err(); !errors.Is(err, lock.ErrClosed) {
			t.Errorf("lease %s: Err() = %v after Close, want ErrClosed", h.name, err)
		}
		if err := h.l.Extend(s.ctx, s.c.ttl); !errors.Is(err, lock.ErrClosed) {
			t.Errorf("lease %s: Extend after Close err = %v, want ErrClosed", h.name, err)
		}
	}
	for _, w := range waiters {
		r, ok := s.awaitResult(w.ch, "Acquire "+w.what+" during Close")
		if !ok {
			continue
		}
		if !errors.Is(r.err, lock.ErrClosed) {
			t.Errorf("Acquire %s during Close err = %v, want ErrClosed", w.what, r.err)
		}
		if r.l != nil {
			t.Errorf("Acquire %s during Close returned a lease (token %d, Err() = %v)", w.what, r.l.Token(), r.l.Err())
		}
	}
	_ = ol // held until the backend closed

	k := s.key("after")
	calls := map[string]func() error{
		"Acquire":    func() error { _, err := m.Acquire(s.ctx, k); return err },
		"TryAcquire": func() error { _, err := m.TryAcquire(s.ctx, k); return err },
		"AcquireNS":  func() error { _, err := m.AcquireNS(s.ctx, "x"); return err },
		"WithLock": func() error {
			return lock.WithLock(s.ctx, m, k, func(context.Context) error {
				t.Errorf("WithLock ran fn after Close")
				return nil
			})
		},
		"Do": func() error {
			_, err := lock.Do(s.ctx, m, k, func(context.Context) (int, error) {
				t.Errorf("Do ran fn after Close")
				return 0, nil
			})
			return err
		},
	}
	for name, f := range calls {
		noPanic(t, name+" after Close", func() {
			if err := f(); !errors.Is(err, lock.ErrClosed) {
				t.Errorf("%s after Close err = %v, want ErrClosed", name, err)
			}
		})
	}
	for _, h := range leases {
		noPanic(t, "Release after Close", func() { _ = h.l.Release(s.ctx) })
	}
	noPanic(t, "second Close", func() {
		if err := m.Close(); err != nil {
			t.Errorf("second Close err = %v, want nil", err)
		}
	})
	s.expectGoroutines(base, "after Close")
}

// expectGoroutines waits, within the suite's bound, for the number of
// goroutines to fall to base, and reports the stacks if it does not.
func (s *suite) expectGoroutines(base int, what string) {
	s.t.Helper()
	deadline := time.Now().Add(s.bound())
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			s.t.Errorf("%s: %d goroutines, want at most %d (G7); goroutines:\n%s", what, n, base, bytes.TrimSpace(buf))
			return
		}
		// Goroutines that were told to stop may still be on their way out.
		<-time.After(time.Millisecond)
	}
}
