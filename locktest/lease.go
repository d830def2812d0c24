package locktest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock"
)

// G2: a lease that does not renew itself ends at its deadline with
// ErrExpired, observed within epsilon; Err() is non-nil from the deadline on
// (O5); no one else gets the key before the deadline; a waiter gets it when
// it expires without waiting for its retry delay (G6); Extend cannot
// resurrect it, and its Release does not free the next holder's key (G4).
func testExpiry(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	ttl := s.c.ttl
	before := time.Now()
	l := s.acquire(s.ctx, m, k, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	got := time.Now()
	dl, ok := l.Deadline()
	if !ok {
		t.Fatal("Deadline() ok = false for a lease that does not renew itself")
	}
	if dl.After(got.Add(ttl)) {
		t.Errorf("Deadline() is %v after Acquire returned, more than the TTL %v", dl.Sub(got), ttl)
	}
	if !dl.After(before) {
		t.Fatalf("Deadline() is %v before Acquire was called", before.Sub(dl))
	}
	lctx := l.Context()
	waiter := goAcquire(s.ctx, m, k, l, s.wakeOpts()...)

	select {
	case <-lctx.Done():
		if now := time.Now(); now.Before(dl) {
			t.Errorf("lease ended %v before its deadline: %v", dl.Sub(now), context.Cause(lctx))
		}
	case <-time.After(time.Until(dl)):
	}
	for time.Now().Before(dl) {
		runtime.Gosched() // a timer never fires early; this only makes sure
	}
	if err := l.Err(); err == nil {
		t.Errorf("Err() = nil at the deadline, want ErrExpired (O5)")
	}
	if !s.await(lctx.Done(), "lease's context after its deadline") {
		return
	}
	late := time.Since(dl)
	t.Logf("lease's context observed done %v after its deadline", late)
	if late > s.c.epsilon {
		t.Errorf("lease's context observed done %v after its deadline, want within %v (G2, O5)", late, s.c.epsilon)
	}
	if err := context.Cause(lctx); !errors.Is(err, lock.ErrExpired) {
		t.Errorf("context.Cause(lease) = %v, want ErrExpired", err)
	}
	if err := l.Err(); !errors.Is(err, lock.ErrExpired) {
		t.Errorf("Err() = %v, want ErrExpired", err)
	}
	if err := l.Extend(s.ctx, ttl); !errors.Is(err, lock.ErrExpired) {
		t.Errorf("Extend after expiry err = %v, want ErrExpired", err)
	}

	r, ok := s.awaitResult(waiter, "waiter for an expired key")
	if !ok {
		if !s.c.polling {
			t.Errorf("the waiter was not woken at the holder's TTL (G6); for a backend that cannot wake waiters, pass locktest.WithPolling")
		}
		return
	}
	if r.err != nil {
		t.Fatalf("waiter for an expired key err = %v, want nil", r.err)
	}
	t.Logf("waiter got the key %v after the deadline", r.at.Sub(dl))
	if r.at.Before(dl) {
		t.Errorf("another holder got the key %v before the lease's deadline (G1, G2)", dl.Sub(r.at))
	}
	if r.prevErr == nil {
		t.Errorf("expired lease's Err() = nil when another holder got the key (G1)")
	}
	if r.l.Token() <= l.Token() {
		t.Errorf("next holder's token %d, want > %d (G3)", r.l.Token(), l.Token())
	}
	// Releasing the expired lease reports the expiry, again and again, and
	// leaves the next holder's key alone.
	for range 2 {
		if err := l.Release(s.ctx); !errors.Is(err, lock.ErrExpired) {
			t.Errorf("Release of an expired lease err = %v, want ErrExpired", err)
		}
	}
	if err := r.l.Err(); err != nil {
		t.Errorf("next holder's Err() = %v after the expired lease's Release, want nil", err)
	}
	s.expectHeld(m, k)
	s.release(r.l)
	s.expectFree(m, k)
}

// Extend moves the deadline of a lease that does not renew itself: past its
// old deadline it still holds the key.
func testExtend(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	ttl := s.c.ttl
	l := s.acquire(s.ctx, m, k, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	lctx := l.Context()
	dl1, ok := l.Deadline()
	if !ok {
		t.Fatal("Deadline() ok = false for a lease that does not renew itself")
	}
	if err := l.Extend(s.ctx, 2*ttl); err != nil {
		t.Fatalf("Extend(2*TTL) err = %v, want nil", err)
	}
	dl2, ok := l.Deadline()
	if !ok || !dl2.After(dl1) {
		t.Errorf("Deadline() after Extend = %v, %v; want later than %v", dl2, ok, dl1)
	}
	if limit := time.Now().Add(2 * ttl); dl2.After(limit) {
		t.Errorf("Deadline() after Extend(%v) is %v beyond now+%v", 2*ttl, dl2.Sub(limit), 2*ttl)
	}
	if err := l.Extend(s.ctx, 0); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("Extend(0) err = %v, want ErrInvalid", err)
	}

	past := dl1.Add(ttl / 4) // after the old deadline, before the new one
	select {
	case <-lctx.Done():
		t.Fatalf("extended lease ended %v before its new deadline: %v", time.Until(dl2), context.Cause(lctx))
	case <-time.After(time.Until(past)):
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err() = %v past the old deadline of an extended lease, want nil", err)
	}
	s.expectHeld(m, k)
	s.release(l)
	if err := l.Extend(s.ctx, ttl); !errors.Is(err, lock.ErrReleased) {
		t.Errorf("Extend after Release err = %v, want ErrReleased", err)
	}
	s.expectFree(m, k)
}

// G2: a lease that renews itself (the default) holds its key across
// several TTLs, with Err() nil.
func testAutoExtend(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	ttl := s.c.ttl
	start := time.Now()
	l := s.acquire(s.ctx, m, k, lock.WithTTL(ttl))
	lctx := l.Context()
	select {
	case <-lctx.Done():
		t.Fatalf("a lease that renews itself ended after %v (TTL %v): %v", time.Since(start), ttl, context.Cause(lctx))
	case <-time.After(3 * ttl):
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err() = %v after 3 TTLs of renewal, want nil", err)
	}
	if dl, ok := l.Deadline(); ok && !dl.After(time.Now()) {
		t.Errorf("Deadline() of a renewed lease is %v in the past", time.Since(dl))
	}
	s.expectHeld(m, k)
	if err := l.Extend(s.ctx, ttl); err != nil {
		t.Errorf("Extend of a lease that renews itself err = %v, want nil", err)
	}
	s.release(l)
	if err := l.Err(); !errors.Is(err, lock.ErrReleased) {
		t.Errorf("Err() after Release = %v, want ErrReleased", err)
	}
	s.expectFree(m, k)
}

// The context given to Acquire bounds the lease: when it ends, the lease's
// context ends with its cause, and the key is freed at once, long before its
// TTL; Release then reports success.
func testParentCancel(s *suite) {
	t := s.t
	m := s.mutex()
	long := 50 * s.c.ttl // the key must be free long before this
	for _, renew := range []bool{true, false} {
		for _, deadline := range []bool{false, true} {
			name := fmt.Sprintf("renew=%v,deadline=%v", renew, deadline)
			k := s.key(name)
			var (
				pctx   context.Context
				cancel context.CancelCauseFunc
				cause  = errors.New("locktest: parent cancelled")
			)
			if deadline {
				var c context.CancelFunc
				pctx, c = context.WithTimeout(s.ctx, s.c.ttl/4)
				cancel = func(error) { c() }
				cause = context.DeadlineExceeded
			} else {
				pctx, cancel = context.WithCancelCause(s.ctx)
			}
			l := s.acquire(pctx, m, k, lock.WithTTL(long), lock.WithAutoExtend(renew))
			lctx := l.Context()
			if !deadline {
				cancel(cause)
			}
			ended := s.await(lctx.Done(), name+": lease's context after its parent's end")
			cancel(nil)
			if !ended {
				continue
			}
			if err := context.Cause(lctx); !errors.Is(err, cause) {
				t.Errorf("%s: context.Cause(lease) = %v, want %v", name, err, cause)
			}
			if err := l.Err(); !errors.Is(err, cause) {
				t.Errorf("%s: Err() = %v, want %v", name, err, cause)
			}
			// Freed at once: a waiter gets the key well within its TTL.
			ctx, c := context.WithTimeout(s.ctx, 10*s.c.ttl)
			l2, err := m.Acquire(ctx, k, s.wakeOpts()...)
			c()
			if err != nil {
				t.Errorf("%s: key not free %v after the lease's parent ended (TTL %v): %v", name, 10*s.c.ttl, long, err)
			} else {
				if l2.Token() <= l.Token() {
					t.Errorf("%s: next token %d, want > %d", name, l2.Token(), l.Token())
				}
				s.release(l2)
			}
			if err := l.Release(s.ctx); err != nil {
				t.Errorf("%s: Release after the parent ended err = %v, want nil", name, err)
			}
		}
	}
}

// G3: tokens strictly increase across the successive holders of a key,
// with other keys used in between, after the key's state was freed, and
// after the key expired and stayed unused; a fenced store accepts them all.
func testFencing(s *suite) {
	t := s.t
	m := s.mutex()
	k, other := s.key("k"), s.key("other")
	var store FencedStore
	var last, lastOther uint64
	next := func(l *lock.Lease, what string) {
		t.Helper()
		if l.Token() <= last {
			t.Errorf("%s: token %d, want > %d (G3)", what, l.Token(), last)
		}
		if !store.Write(k, what, l.Token()) {
			t.Errorf("%s: fenced store refused token %d", what, l.Token())
		}
		last = l.Token()
	}
	for i := range 20 {
		var l *lock.Lease
		var err error
		if i%2 == 0 {
			l, err = m.Acquire(s.ctx, k)
		} else {
			l, err = m.TryAcquire(s.ctx, k)
		}
		if err != nil {
			t.Fatalf("holder %d: %v", i, err)
		}
		next(l, fmt.Sprintf("holder %d", i))
		lo := s.acquire(s.ctx, m, other)
		if lo.Token() <= lastOther {
			t.Errorf("key %q: token %d, want > %d", other, lo.Token(), lastOther)
		}
		lastOther = lo.Token()
		s.release(lo)
		s.release(l)
	}

	// Many other keys come and go while k is unused.
	for i := range 100 {
		s.release(s.acquire(s.ctx, m, s.key(fmt.Sprintf("churn%d", i))))
	}
	l := s.acquire(s.ctx, m, k)
	next(l, "holder after churn")
	s.release(l)

	// The key expires, stays unused for a TTL, and is taken again before the
	// expired lease is released.
	ttl := s.c.ttl
	le := s.acquire(s.ctx, m, k, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	next(le, "expiring holder")
	if !s.await(le.Done(), "expiring lease") {
		return
	}
	<-time.After(ttl) // the point is time passing: let the key expire everywhere
	l = s.acquire(s.ctx, m, k)
	next(l, "holder after expiry")
	if err := le.Release(s.ctx); !errors.Is(err, lock.ErrExpired) {
		t.Errorf("Release of an expired lease err = %v, want ErrExpired", err)
	}
	s.expectHeld(m, k)
	s.release(l)
	if err := store.Check(); err != nil {
		t.Error(err)
	}
}

// G4: Release cancels the lease's context, with cause ErrReleased, before
// it asks the backend to free the key; it is idempotent, sends nothing the
// second time, never frees a later holder's key, has one result for
// concurrent callers, and frees the key even with a done context.
func testRelease(s *suite) {
	t := s.t
	m, hk := s.hookedMutex()
	k := s.key("k")

	l := s.acquire(s.ctx, m, k)
	lctx := l.Context()
	type seen struct {
		done       bool
		cause, err error
	}
	seenCh := make(chan seen, 1)
	tok := l.Token()
	hk.setOnRelease(func(req lock.Request) {
		if req.Key == k && req.Token == tok {
			select {
			case seenCh <- seen{isClosed(lctx.Done()), context.Cause(lctx), l.Err()}:
			default:
			}
		}
	})
	if err := l.Release(s.ctx); err != nil {
		t.Fatalf("Release err = %v, want nil", err)
	}
	hk.setOnRelease(nil)
	select {
	case got := <-seenCh:
		if !got.done || !errors.Is(got.cause, lock.ErrReleased) || !errors.Is(got.err, lock.ErrReleased) {
			t.Errorf("when the backend was asked to free the key: lease done = %v, cause = %v, Err() = %v; want done, ErrReleased (O1)",
				got.done, got.cause, got.err)
		}
	default:
		t.Errorf("Release did not ask the backend to free the key")
	}
	if !isClosed(lctx.Done()) {
		t.Errorf("lease's context not done when Release returned")
	}
	if err := context.Cause(lctx); !errors.Is(err, lock.ErrReleased) {
		t.Errorf("context.Cause(lease) = %v, want ErrReleased", err)
	}
	if err := l.Err(); !errors.Is(err, lock.ErrReleased) {
		t.Errorf("Err() = %v, want ErrReleased", err)
	}
	if err := l.Release(s.ctx); err != nil {
		t.Errorf("second Release err = %v, want nil as the first", err)
	}
	if err := l.Extend(s.ctx, s.c.ttl); !errors.Is(err, lock.ErrReleased) {
		t.Errorf("Extend after Release err = %v, want ErrReleased", err)
	}

	// A released lease never frees the next holder's key.
	l2 := s.acquire(s.ctx, m, k)
	if err := l.Release(s.ctx); err != nil {
		t.Errorf("third Release err = %v, want nil as the first", err)
	}
	if n := hk.releaseCount(k, tok); n != 1 {
		t.Errorf("Release called the backend %d times for one lease, want 1", n)
	}
	if err := l2.Err(); err != nil {
		t.Errorf("next holder's Err() = %v after an old lease's Release, want nil", err)
	}
	s.expectHeld(m, k)
	s.release(l2)

	// Concurrent calls: one release, one result.
	l3 := s.acquire(s.ctx, m, k)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := l3.Release(s.ctx); err != nil {
				t.Errorf("concurrent Release err = %v, want nil", err)
			}
		})
	}
	wg.Wait()
	if n := hk.releaseCount(k, l3.Token()); n != 1 {
		t.Errorf("8 concurrent Release calls called the backend %d times, want 1", n)
	}
	s.expectFree(m, k)

	// A done context does not stop Release from freeing the key.
	l4 := s.acquire(s.ctx, m, k)
	done, cancel := context.WithCancel(s.ctx)
	cancel()
	if err := l4.Release(done); err != nil {
		t.Errorf("Release(done ctx) err = %v, want nil", err)
	}
	s.expectFree(m, k)

	// A context asked for after Release is done, with ErrReleased.
	l5 := s.acquire(s.ctx, m, k)
	s.release(l5)
	if ctx := l5.Context(); !isClosed(ctx.Done()) || !errors.Is(context.Cause(ctx), lock.ErrReleased) {
		t.Errorf("Context() after Release: done = %v, cause %v; want done, ErrReleased", isClosed(ctx.Done()), context.Cause(ctx))
	}
}

// G4: a nil *Lease holds nothing, and its methods neither panic nor
// pretend otherwise.
func testNilLease(s *suite) {
	t := s.t
	var l *lock.Lease
	noPanic(t, "nil Lease", func() {
		if err := l.Release(s.ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("nil Lease: Release err = %v, want ErrNotHeld", err)
		}
		if err := l.Release(s.ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("nil Lease: second Release err = %v, want ErrNotHeld", err)
		}
		if err := l.Extend(s.ctx, time.Second); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("nil Lease: Extend err = %v, want ErrNotHeld", err)
		}
		if err := l.Err(); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("nil Lease: Err() = %v, want ErrNotHeld", err)
		}
		if !isClosed(l.Done()) {
			t.Errorf("nil Lease: Done() not closed")
		}
		if err := context.Cause(l.Context()); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("nil Lease: context.Cause(Context()) = %v, want ErrNotHeld", err)
		}
		if tok, key := l.Token(), l.Key(); tok != 0 || key != "" {
			t.Errorf("nil Lease: Token(), Key() = %d, %q; want 0, \"\"", tok, key)
		}
		if _, ok := l.Deadline(); ok {
			t.Errorf("nil Lease: Deadline() ok = true")
		}
	})
}

// noPanic runs f and reports a panic as an error.
func noPanic(t testing.TB, what string, f func()) (ok bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
			ok = false
		}
	}()
	f()
	return true
}
