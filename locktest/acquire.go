package locktest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leaselock/lock"
)

// TryAcquire fails at once on a held key, blaming neither context nor
// holder, and succeeds once the key is released. A done context never wins
// a free key.
func testTryAcquire(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	l, err := m.TryAcquire(s.ctx, k)
	if err != nil {
		t.Fatalf("TryAcquire(%q) of a free key err = %v, want nil", k, err)
	}
	if got := l.Key(); got != k {
		t.Errorf("Key() = %q, want %q", got, k)
	}
	s.expectHeld(m, k)
	// WithRetry(0) makes Acquire a single attempt.
	l2, err := m.Acquire(s.ctx, k, lock.WithRetry(0))
	if l2 != nil {
		_ = l2.Release(s.ctx)
	}
	if !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("Acquire(WithRetry(0)) of a held key err = %v, want ErrNotAcquired", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire(WithRetry(0)) err = %v: blames a context that did not end", err)
	}
	if err := l.Err(); err != nil {
		t.Errorf("holder's Err() = %v after a failed TryAcquire, want nil", err)
	}
	s.release(l)
	if tok := s.expectFree(m, k); tok != 0 && tok <= l.Token() {
		t.Errorf("token after release = %d, want > %d", tok, l.Token())
	}

	// A done context must not win a free key, and holds nothing after.
	done, cancel := context.WithCancel(s.ctx)
	cancel()
	for name, f := range map[string]func(context.Context, string, ...lock.Option) (*lock.Lease, error){
		"TryAcquire": m.TryAcquire,
		"Acquire":    m.Acquire,
	} {
		l, err := f(done, k)
		if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s(done ctx) err = %v, want ErrNotAcquired and context.Canceled", name, err)
		}
		if l != nil {
			t.Errorf("%s(done ctx) returned a lease", name)
			_ = l.Release(s.ctx)
		}
	}
	s.expectFree(m, k)
}

// G6: waiters get the key when it is released, each release waking the
// next, without waiting for their retry delay; the previous holder's lease
// has ended when the next one gets the key (G1).
func testHandOff(s *suite) {
	t := s.t
	m, hk := s.hookedMutex()
	k := s.key("k")
	holder := s.acquire(s.ctx, m, k)

	// Waiters release the key as soon as they get it, so each release must
	// wake the next. One more arrives as the key is released.
	const waiters = 4
	results := make(chan result, waiters+1)
	wait := func() {
		l, err := m.Acquire(s.ctx, k, s.wakeOpts()...)
		r := result{l: l, err: err, at: time.Now(), prevErr: holder.Err()}
		if err == nil {
			r.err = l.Release(s.ctx)
		}
		results <- r
	}
	for range waiters {
		go wait()
	}
	if !s.await(hk.failedAttempts(k, waiters), "waiters' first attempts") {
		return
	}
	select {
	case r := <-results:
		t.Fatalf("a waiter returned while the key was held: err = %v", r.err)
	default:
	}
	go wait()
	released := time.Now()
	s.release(holder)
	tokens := make(map[uint64]bool)
	var last time.Time
	for range waiters + 1 {
		r, ok := s.awaitResult(results, "waiter after a release")
		if !ok {
			if !s.c.polling {
				t.Errorf("a release did not wake the next waiter (G6); for a backend that cannot wake waiters, pass locktest.WithPolling")
			}
			return
		}
		if r.err != nil {
			t.Errorf("waiter err = %v, want nil", r.err)
			continue
		}
		if tok := r.l.Token(); tok <= holder.Token() || tokens[tok] {
			t.Errorf("waiter's token %d: want > %d and unique", tok, holder.Token())
		}
		tokens[r.l.Token()] = true
		if !errors.Is(r.prevErr, lock.ErrReleased) {
			t.Errorf("the previous holder's Err() = %v when a waiter got the key, want ErrReleased", r.prevErr)
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	t.Logf("%d waiters served %v after the release", waiters+1, last.Sub(released))
	s.expectFree(m, k)
}

// A waiter whose context is cancelled returns ErrNotAcquired joined with
// context.Canceled, and holds nothing: neither the key now nor after its
// holder releases it.
func testCancelWaiter(s *suite) {
	t := s.t
	m, hk := s.hookedMutex()
	k := s.key("k")
	holder := s.acquire(s.ctx, m, k)
	wctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	ch := goAcquire(wctx, m, k, nil, s.wakeOpts()...)
	if !s.await(hk.failedAttempts(k, 1), "waiter's first attempt") {
		return
	}
	if !s.c.polling {
		// Cancel while the backend waits, so that a Wait deaf to its
		// context is caught, rather than before it begins.
		if !s.await(hk.waitStarted(k), "waiter's Wait call") {
			return
		}
	}
	cancel()
	r, ok := s.awaitResult(ch, "cancelled waiter")
	if !ok {
		return
	}
	if !errors.Is(r.err, lock.ErrNotAcquired) || !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled Acquire err = %v, want ErrNotAcquired and context.Canceled", r.err)
	}
	if r.l != nil {
		t.Errorf("cancelled Acquire returned a lease (token %d)", r.l.Token())
		_ = r.l.Release(s.ctx)
	}
	if err := holder.Err(); err != nil {
		t.Errorf("holder's Err() = %v after a waiter gave up, want nil", err)
	}
	s.expectHeld(m, k)
	s.release(holder)
	s.expectFree(m, k)
}

// A waiter cancelled as the key is released either gets the key or holds
// nothing: a grant that raced with the cancellation is given back before
// Acquire returns. The trials cancel before, after and while releasing.
func testCancelWaiterRace(s *suite) {
	t := s.t
	m, hk := s.hookedMutex()
	won := 0
	const trials = 24
	for i := range trials {
		k := s.key(fmt.Sprintf("k%d", i))
		holder := s.acquire(s.ctx, m, k)
		wctx, cancel := context.WithCancel(s.ctx)
		ch := goAcquire(wctx, m, k, nil, s.wakeOpts()...)
		if !s.await(hk.failedAttempts(k, 1), "waiter's first attempt") {
			cancel()
			return
		}
		if (i/3)%2 == 1 {
			// Let the waiter age, so that a backend that hands the key
			// directly to a waiter that waited long (memory does after
			// 1ms) takes that path too. Not a synchronisation: every
			// order is correct.
			<-time.After(2 * time.Millisecond)
		}
		switch i % 3 {
		case 0:
			cancel()
			s.release(holder)
		case 1:
			s.release(holder)
			cancel()
		case 2:
			go cancel()
			s.release(holder)
		}
		r, ok := s.awaitResult(ch, "cancelled waiter")
		cancel()
		if !ok {
			return
		}
		switch {
		case r.err == nil:
			won++
			// Its parent is cancelled: the lease ends and frees the key;
			// Release waits for that.
			s.release(r.l)
		case !errors.Is(r.err, lock.ErrNotAcquired) || !errors.Is(r.err, context.Canceled):
			t.Errorf("trial %d: cancelled Acquire err = %v, want ErrNotAcquired and context.Canceled", i, r.err)
		case r.l != nil:
			t.Errorf("trial %d: failed Acquire returned a lease", i)
		}
		s.expectFree(m, k)
	}
	t.Logf("the waiter got the key in %d of %d trials", won, trials)
}

// An Acquire that retries until its context is done (the default) returns
// ErrNotAcquired joined with context.DeadlineExceeded, and holds nothing.
func testWaitDeadline(s *suite) {
	t := s.t
	m := s.mutex()
	k := s.key("k")
	holder := s.acquire(s.ctx, m, k)
	timeout := s.c.ttl / 4
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	l, err := m.Acquire(ctx, k, s.retryOpts()...)
	early := time.Until(dl)
	if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire past its deadline err = %v, want ErrNotAcquired and context.DeadlineExceeded", err)
	}
	if l != nil {
		t.Errorf("Acquire past its deadline returned a lease")
		_ = l.Release(s.ctx)
	}
	if early > 0 {
		t.Errorf("Acquire gave up %v before its context's deadline", early)
	}
	s.release(holder)
	s.expectFree(m, k)
}

// WithRetry(n) makes n more attempts, waiting WithDelay between them, then
// gives up with ErrNotAcquired (not a context error); a release during the
// retries lets it get the key.
func testRetry(s *suite) {
	t := s.t
	m, hk := s.hookedMutex()
	k := s.key("k")
	holder := s.acquire(s.ctx, m, k)
	const n = 3
	delay := s.c.ttl / 20
	for i, opts := range [][]lock.Option{
		{lock.WithRetry(n), lock.WithDelay(delay), lock.WithJitter(0)},
		{lock.WithRetry(n), lock.WithBackoff(lock.Exponential(delay/4, delay)), lock.WithJitter(delay / 4)},
	} {
		constant := i == 0
		before := hk.attemptCount(k)
		start := time.Now()
		l, err := m.Acquire(s.ctx, k, opts...)
		elapsed := time.Since(start)
		if !errors.Is(err, lock.ErrNotAcquired) {
			t.Errorf("Acquire(WithRetry(%d)) of a held key err = %v, want ErrNotAcquired", n, err)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire(WithRetry(%d)) err = %v: blames a context that did not end", n, err)
		}
		if l != nil {
			t.Errorf("Acquire(WithRetry(%d)) returned a lease with its error", n)
			_ = l.Release(s.ctx)
		}
		if got := hk.attemptCount(k) - before; got < n+1 {
			t.Errorf("Acquire(WithRetry(%d)) made %d attempts, want at least %d", n, got, n+1)
		}
		if elapsed >= s.bound() {
			t.Errorf("Acquire(WithRetry(%d)) took %v: did not give up", n, elapsed)
		}
		if constant && elapsed < n*delay {
			t.Errorf("Acquire(WithRetry(%d), WithDelay(%v)) gave up after %v, want at least %v", n, delay, elapsed, n*delay)
		}
	}
	if err := holder.Err(); err != nil {
		t.Errorf("holder's Err() = %v, want nil", err)
	}

	// Released during the retries: the waiter gets the key.
	failed := hk.failureCount(k)
	ch := goAcquire(s.ctx, m, k, holder, lock.WithRetry(1000), lock.WithDelay(delay), lock.WithJitter(0))
	if !s.await(hk.failedAttempts(k, failed+1), "waiter's first attempt") {
		return
	}
	s.release(holder)
	r, ok := s.awaitResult(ch, "retrying waiter")
	if !ok {
		return
	}
	if r.err != nil {
		t.Fatalf("Acquire(WithRetry(1000)) after a release err = %v, want nil", r.err)
	}
	s.release(r.l)
}
