package lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// newMemory returns a memory backend, failing the test if it cannot.
func newMemory(t testing.TB) *memory.Backend {
	t.Helper()
	return memory.New()
}

// unpinned is a memory backend that never pins a key, so that leases get a
// deadline and renew themselves through Extend, as over a network.
type unpinned struct{ *memory.Backend }

func (b unpinned) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	req.Renew = false
	return b.Backend.Acquire(ctx, req)
}

func (b unpinned) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	req.Renew = false
	return b.Backend.Wait(ctx, req, d)
}

func (b unpinned) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	req.Renew = false
	return b.Backend.Extend(ctx, req)
}

// flaky is an unpinned memory backend whose Extend fails while failExtend
// is set, with extendErr, and counts calls.
type flaky struct {
	unpinned
	failExtend atomic.Bool
	extendErr  error
	extends    atomic.Int64
	acquires   atomic.Int64
}

func (b *flaky) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	b.acquires.Add(1)
	return b.unpinned.Acquire(ctx, req)
}

func (b *flaky) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	b.extends.Add(1)
	if b.failExtend.Load() {
		return lock.Result{}, b.extendErr
	}
	return b.unpinned.Extend(ctx, req)
}

// polling hides the memory backend's Wait, so that Acquire sleeps between
// attempts as over a backend that cannot tell when a key is freed.
type polling struct {
	lock.Backend
	attempts atomic.Int64
}

func (b *polling) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	b.attempts.Add(1)
	return b.Backend.Acquire(ctx, req)
}

// TestLeaseExpiresAtDeadline pins guarantee 2 for a lease that does not
// renew: its context ends exactly at start + TTL - (TTL*drift + 2ms).
func TestLeaseExpiresAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(newMemory(t), lock.WithAutoExtend(false))
		defer m.Close()
		start := time.Now()
		l, err := m.Acquire(t.Context(), "k", lock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		want := start.Add(time.Second - 12*time.Millisecond)
		if d, ok := l.Deadline(); !ok || !d.Equal(want) {
			t.Fatalf("Deadline() = %v, %v; want %v, true", d, ok, want)
		}
		<-l.Done()
		if now := time.Now(); !now.Equal(want) {
			t.Errorf("Done at %v, want %v", now.Sub(start), want.Sub(start))
		}
		if err := l.Err(); !errors.Is(err, lock.ErrExpired) {
			t.Errorf("Err() = %v, want %v", err, lock.ErrExpired)
		}
		if err := context.Cause(l.Context()); !errors.Is(err, lock.ErrExpired) {
			t.Errorf("Cause = %v, want %v", err, lock.ErrExpired)
		}
		if err := l.Extend(t.Context(), time.Second); !errors.Is(err, lock.ErrExpired) {
			t.Errorf("Extend after expiry = %v, want %v", err, lock.ErrExpired)
		}
		if err := l.Release(t.Context()); !errors.Is(err, lock.ErrExpired) {
			t.Errorf("Release after expiry = %v, want %v", err, lock.ErrExpired)
		}
	})
}

// TestTTLRoundedUp pins that a TTL is rounded up to whole milliseconds, the
// precision of Redis's PX, and that the deadline follows the TTL sent.
func TestTTLRoundedUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(unpinned{newMemory(t)}, lock.WithDriftFactor(0))
		defer m.Close()
		start := time.Now()
		l, err := m.Acquire(t.Context(), "k", lock.WithTTL(100*time.Millisecond+time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		if d, _ := l.Deadline(); d.Sub(start) != 99*time.Millisecond {
			t.Errorf("Deadline() - start = %v, want 101ms - 2ms", d.Sub(start))
		}
	})
}

// TestExtendMovesDeadline pins that Extend counts from its own start, not
// from the first acquisition (node-redlock PR #273).
func TestExtendMovesDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(newMemory(t), lock.WithAutoExtend(false), lock.WithTTL(time.Second))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		ctx := l.Context()
		time.Sleep(500 * time.Millisecond)
		extended := time.Now()
		if err := l.Extend(t.Context(), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		want := extended.Add(2*time.Second - 22*time.Millisecond)
		if d, _ := l.Deadline(); !d.Equal(want) {
			t.Errorf("Deadline() = %v after the extension, want %v", d.Sub(extended), want.Sub(extended))
		}
		<-ctx.Done()
		if !time.Now().Equal(want) {
			t.Errorf("context done %v after the extension, want %v", time.Since(extended), want.Sub(extended))
		}
	})
}

// TestRenewalHoldsLease pins that a lease renews itself, through the
// backend, across many TTLs, and that its goroutine is gone after Release.
func TestRenewalHoldsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &flaky{unpinned: unpinned{newMemory(t)}}
		m := lock.New(b, lock.WithTTL(time.Second))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Second)
		if err := l.Err(); err != nil {
			t.Fatalf("Err() after 100 TTLs = %v, want nil", err)
		}
		if n := b.extends.Load(); n < 299 || n > 301 {
			t.Errorf("%d extensions in 100 TTLs, want one every TTL/3", n)
		}
		if _, err := m.TryAcquire(t.Context(), "k"); !errors.Is(err, lock.ErrNotAcquired) {
			t.Errorf("TryAcquire of a renewed key = %v, want %v", err, lock.ErrNotAcquired)
		}
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		// synctest fails the test if the renewal goroutine is still running.
	})
}

// TestRenewalFailureEndsLeaseByDeadline pins guarantee 2 for renewal: when
// extensions fail, the lease ends with ErrLeaseLost no later than its
// deadline; when the backend says the key is gone, at once.
func TestRenewalFailureEndsLeaseByDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		atOnce  bool
		wantErr error
	}{
		{"unreachable", errors.New("node down"), false, lock.ErrLeaseLost},
		{"refused", lock.ErrNotHeld, true, lock.ErrNotHeld},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &flaky{unpinned: unpinned{newMemory(t)}, extendErr: tc.err}
				m := lock.New(b, lock.WithTTL(time.Second))
				defer m.Close()
				l, err := m.Acquire(t.Context(), "k")
				if err != nil {
					t.Fatal(err)
				}
				deadline, _ := l.Deadline()
				b.failExtend.Store(true)
				<-l.Done()
				now := time.Now()
				if now.After(deadline) {
					t.Errorf("lease ended %v after its deadline", now.Sub(deadline))
				}
				if tc.atOnce && !now.Before(deadline) {
					t.Errorf("lease ended at its deadline, want at the first refused renewal")
				}
				cause := context.Cause(l.Context())
				if !errors.Is(cause, lock.ErrLeaseLost) || !errors.Is(cause, tc.wantErr) {
					t.Errorf("Cause = %v, want %v and %v", cause, lock.ErrLeaseLost, tc.wantErr)
				}
				if err := l.Release(t.Context()); !errors.Is(err, lock.ErrLeaseLost) {
					t.Errorf("Release of a lost lease = %v, want %v", err, lock.ErrLeaseLost)
				}
			})
		})
	}
}

// TestHandOffInZeroTime pins guarantee 6 on memory: a release hands the key
// to a waiter at once, not after a retry delay.
func TestHandOffInZeroTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(newMemory(t), lock.WithDelay(time.Hour))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *lock.Lease)
		go func() {
			l2, err := m.Acquire(t.Context(), "k")
			if err != nil {
				t.Error(err)
			}
			got <- l2
		}()
		synctest.Wait() // the waiter is blocked
		time.Sleep(time.Second)
		released := time.Now()
		l.Release(t.Context())
		l2 := <-got
		if d := time.Since(released); d != 0 {
			t.Errorf("waiter got the key %v after the release, want 0", d)
		}
		if l2.Token() <= l.Token() {
			t.Errorf("token %d after %d, want greater", l2.Token(), l.Token())
		}
		l2.Release(t.Context())
	})
}

// TestWaitersServedInOrder pins that waiters get a hot key in the order they
// began to wait.
func TestWaitersServedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(newMemory(t))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			order []int
		)
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				l, err := m.Acquire(t.Context(), "k")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				l.Release(t.Context())
			})
			synctest.Wait()
			time.Sleep(time.Millisecond) // waiters begin at distinct times
		}
		l.Release(t.Context())
		wg.Wait()
		for i, got := range order {
			if got != i {
				t.Fatalf("waiters served in order %v, want 0 to 4", order)
			}
		}
	})
}

// TestRetrySleepsBetweenAttempts pins WithRetry and WithDelay on a backend
// that cannot wake waiters: n retries, each after the delay.
func TestRetrySleepsBetweenAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &polling{Backend: newMemory(t)}
		m := lock.New(b, lock.WithJitter(0), lock.WithDelay(100*time.Millisecond))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		b.attempts.Store(0)
		start := time.Now()
		_, err = m.Acquire(t.Context(), "k", lock.WithRetry(3))
		if !errors.Is(err, lock.ErrNotAcquired) {
			t.Fatalf("Acquire = %v, want %v", err, lock.ErrNotAcquired)
		}
		if n := b.attempts.Load(); n != 4 {
			t.Errorf("%d attempts, want 1 + 3 retries", n)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Errorf("gave up after %v, want 3 delays of 100ms", d)
		}
	})
}

// TestRetryWaitsForHolderTTL pins that a waiter on a polling backend wakes
// when the holder's key expires, not at its longer retry delay.
func TestRetryWaitsForHolderTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &polling{Backend: newMemory(t)}
		m := lock.New(b, lock.WithJitter(0), lock.WithDelay(time.Hour))
		defer m.Close()
		start := time.Now()
		if _, err := m.Acquire(t.Context(), "k", lock.WithAutoExtend(false), lock.WithTTL(time.Second)); err != nil {
			t.Fatal(err)
		}
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		if d := time.Since(start); d != time.Second {
			t.Errorf("acquired after %v, want at the holder's expiry, 1s", d)
		}
	})
}

// TestCancelWhileWaiting pins the error contract of a wait ended by ctx:
// ErrNotAcquired joined with the context's error, and nothing held.
func TestCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newMemory(t)
		m := lock.New(b)
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = m.Acquire(ctx, "k")
		if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire = %v, want %v joined with %v", err, lock.ErrNotAcquired, context.DeadlineExceeded)
		}
		l.Release(t.Context())
		if n := b.Len(); n != 0 {
			t.Errorf("backend holds %d keys after the failed wait, want 0", n)
		}
	})
}

// TestParentEndReleasesAtOnce pins that the end of Acquire's context ends
// the lease and frees its key at once, not at TTL.
func TestParentEndReleasesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newMemory(t)
		m := lock.New(b, lock.WithTTL(time.Minute))
		defer m.Close()
		ctx, cancel := context.WithCancelCause(t.Context())
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		stop := errors.New("request over")
		cancel(stop)
		<-l.Done()
		if err := l.Err(); err != stop {
			t.Errorf("Err() = %v, want the parent's cause %v", err, stop)
		}
		synctest.Wait() // the release runs in context.AfterFunc
		if n := b.Len(); n != 0 {
			t.Errorf("backend holds %d keys after the parent ended, want 0", n)
		}
		if err := l.Release(t.Context()); err != nil {
			t.Errorf("Release after the parent ended = %v, want nil", err)
		}
	})
}

// cancelling cancels the caller's context during the attempt, and grants
// the key all the same: Acquire must give it back.
type cancelling struct {
	*memory.Backend
	cancel context.CancelFunc
}

func (b cancelling) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	b.cancel()
	return b.Backend.Acquire(ctx, req)
}

// TestGrantAfterCancelGivenBack pins that Acquire holds nothing on failure,
// even when the grant raced with the end of its context.
func TestGrantAfterCancelGivenBack(t *testing.T) {
	mem := newMemory(t)
	ctx, cancel := context.WithCancel(t.Context())
	m := lock.New(cancelling{mem, cancel})
	defer m.Close()
	_, err := m.Acquire(ctx, "k")
	if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire = %v, want %v joined with %v", err, lock.ErrNotAcquired, context.Canceled)
	}
	if n := mem.Len(); n != 0 {
		t.Errorf("backend holds %d keys, want 0", n)
	}
}

// TestCloseEndsLeases pins that Close ends renewing leases, stops their
// goroutines, and makes later calls fail with ErrClosed.
func TestCloseEndsLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(unpinned{newMemory(t)})
		l, err := m.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		pinned := lock.New(newMemory(t))
		p, err := pinned.Acquire(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		watched, err := pinned.Acquire(t.Context(), "w")
		if err != nil {
			t.Fatal(err)
		}
		done := watched.Done() // made before Close: Close must close it
		for _, m := range []*lock.Mutex{m, pinned} {
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if err := m.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
			if _, err := m.Acquire(t.Context(), "x"); !errors.Is(err, lock.ErrClosed) {
				t.Errorf("Acquire after Close = %v, want %v", err, lock.ErrClosed)
			}
		}
		select {
		case <-done:
		default:
			t.Error("Close left open the context of a memory lease")
		}
		for _, l := range []*lock.Lease{l, p, watched} {
			if err := context.Cause(l.Context()); !errors.Is(err, lock.ErrClosed) {
				t.Errorf("lease cause after Close = %v, want %v", err, lock.ErrClosed)
			}
		}
	})
}

// TestNilLease pins that the methods of a nil Lease do not panic.
func TestNilLease(t *testing.T) {
	var l *lock.Lease
	if err := l.Release(t.Context()); !errors.Is(err, lock.ErrNotHeld) {
		t.Errorf("Release = %v, want %v", err, lock.ErrNotHeld)
	}
	if err := l.Extend(t.Context(), time.Second); !errors.Is(err, lock.ErrNotHeld) {
		t.Errorf("Extend = %v, want %v", err, lock.ErrNotHeld)
	}
	if err := l.Err(); !errors.Is(err, lock.ErrNotHeld) {
		t.Errorf("Err = %v, want %v", err, lock.ErrNotHeld)
	}
	select {
	case <-l.Done():
	default:
		t.Error("Done() of a nil Lease is open")
	}
	if _, ok := l.Deadline(); ok || l.Token() != 0 || l.Key() != "" {
		t.Error("nil Lease reports a deadline, token or key")
	}
}

// TestDoReportsLostLease pins that Do returns fn's result, and joins the
// reason the lease ended when it ended under fn.
func TestDoReportsLostLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &flaky{unpinned: unpinned{newMemory(t)}, extendErr: lock.ErrNotHeld}
		m := lock.New(b, lock.WithTTL(time.Second))
		defer m.Close()
		n, err := lock.Do(t.Context(), m, "k", func(ctx context.Context) (int, error) { return 7, nil })
		if n != 7 || err != nil {
			t.Errorf("Do = %d, %v; want 7, nil", n, err)
		}
		_, err = lock.Do(t.Context(), m, "k", func(ctx context.Context) (int, error) {
			b.failExtend.Store(true)
			<-ctx.Done()
			return 0, context.Cause(ctx)
		})
		if !errors.Is(err, lock.ErrLeaseLost) {
			t.Errorf("Do with a lost lease = %v, want %v", err, lock.ErrLeaseLost)
		}
	})
}

// counting is an unpinned memory backend that counts Release calls.
type counting struct {
	unpinned
	releases atomic.Int64
}

func (b *counting) Release(ctx context.Context, req lock.Request) error {
	b.releases.Add(1)
	return b.unpinned.Release(ctx, req)
}

// TestCloseReleasesLeasesWithDeadline pins a bug found in review: Close must
// free on the backend the keys of leases that neither renew nor are watched,
// which a backend over the network would otherwise keep until their TTL.
func TestCloseReleasesLeasesWithDeadline(t *testing.T) {
	b := &counting{unpinned: unpinned{newMemory(t)}}
	m := lock.New(b, lock.WithAutoExtend(false), lock.WithTTL(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, c := range []context.Context{context.Background(), ctx} {
		if _, err := m.Acquire(c, fmt.Sprint(c)); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	if n := b.releases.Load(); n != 2 {
		t.Errorf("Close sent %d releases for 2 held keys, want 2", n)
	}
}

// TestContextRacesRelease pins a data race found in review, between making
// a lease's context and releasing it (run with -race).
func TestContextRacesRelease(t *testing.T) {
	m := lock.New(unpinned{newMemory(t)}, lock.WithAutoExtend(false))
	defer m.Close()
	for i := range 200 {
		l, err := m.Acquire(t.Context(), fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { l.Context() })
		wg.Go(func() { l.Release(t.Context()) })
		wg.Wait()
	}
}

// failing is a backend whose attempts fail with an error and whose Wait
// returns at once with the same error.
type failing struct{ *memory.Backend }

var errNode = errors.New("node unreachable")

func (failing) Acquire(context.Context, lock.Request) (lock.Result, error) {
	return lock.Result{}, errNode
}

func (failing) Wait(context.Context, lock.Request, time.Duration) (lock.Result, error) {
	return lock.Result{}, errNode
}

// TestWaitErrorsEndWithContext pins a bug found with the Redis backend: a
// backend whose waits failed at once kept Acquire looping after its context
// ended.
func TestWaitErrorsEndWithContext(t *testing.T) {
	m := lock.New(failing{newMemory(t)})
	defer m.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := m.Acquire(ctx, "k")
	if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errNode) {
		t.Errorf("Acquire = %v, want %v joined with %v and the backend's error", err, lock.ErrNotAcquired, context.DeadlineExceeded)
	}
}
