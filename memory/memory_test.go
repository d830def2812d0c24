package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

func newBackend(t testing.TB, opts ...memory.Option) *memory.Backend {
	t.Helper()
	return memory.New(opts...)
}

func TestWithShards(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{-1, 1}, {0, 1}, {1, 1}, {3, 4}, {64, 64}, {100, 128}, {1 << 30, memory.MaxShards},
	} {
		if got := memory.New(memory.WithShards(tc.n)).Shards(); got != tc.want {
			t.Errorf("New(WithShards(%d)).Shards() = %d, want %d", tc.n, got, tc.want)
		}
	}
	if got := memory.New().Shards(); got != memory.DefaultShards {
		t.Errorf("New().Shards() = %d, want %d", got, memory.DefaultShards)
	}
}

// TestTokensSurviveFreedEntries pins that fencing tokens strictly increase
// for a key even though its state is freed whenever it is unused.
func TestTokensSurviveFreedEntries(t *testing.T) {
	b := newBackend(t, memory.WithShards(1))
	ctx := context.Background()
	var last uint64
	for i := range 100 {
		key := "k"
		if i%2 == 1 {
			key = fmt.Sprint("other", i) // other keys share the shard and its counter
		}
		res, err := b.Acquire(ctx, lock.Request{Key: key, TTL: time.Second, Renew: true})
		if err != nil || !res.Acquired {
			t.Fatalf("Acquire %d = %+v, %v", i, res, err)
		}
		if res.Token <= last {
			t.Fatalf("token %d after %d, want greater", res.Token, last)
		}
		last = res.Token
		if err := b.Release(ctx, lock.Request{Key: key, Token: res.Token}); err != nil {
			t.Fatal(err)
		}
		if n := b.Len(); n != 0 {
			t.Fatalf("Len() = %d with no key held, want 0", n)
		}
	}
}

// TestReleaseChecksOwner pins that a release or extension by a stale holder
// changes nothing.
func TestReleaseChecksOwner(t *testing.T) {
	b := newBackend(t)
	ctx := context.Background()
	res, err := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
	if err != nil || !res.Acquired {
		t.Fatal(res, err)
	}
	stale := lock.Request{Key: "k", Token: res.Token - 1, TTL: time.Second}
	if err := b.Release(ctx, stale); !errors.Is(err, lock.ErrNotHeld) {
		t.Errorf("Release by a stale token = %v, want %v", err, lock.ErrNotHeld)
	}
	if _, err := b.Extend(ctx, stale); !errors.Is(err, lock.ErrNotHeld) {
		t.Errorf("Extend by a stale token = %v, want %v", err, lock.ErrNotHeld)
	}
	if got, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second}); got.Acquired {
		t.Error("key free after a stale release")
	}
}

// TestExpiryWithoutSweeper pins that a key that is not renewed expires at
// its TTL, noticed when the key is next used, with no goroutine of its own.
func TestExpiryWithoutSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		first, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second})
		if !first.Acquired || first.Start.IsZero() {
			t.Fatalf("Acquire = %+v, want a grant with its start", first)
		}
		time.Sleep(999 * time.Millisecond)
		res, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second})
		if res.Acquired || res.HolderTTL != time.Millisecond {
			t.Fatalf("Acquire 1ms before expiry = %+v, want refused with HolderTTL 1ms", res)
		}
		time.Sleep(time.Millisecond)
		res, _ = b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second})
		if !res.Acquired || res.Token <= first.Token {
			t.Fatalf("Acquire at expiry = %+v, want a grant with a larger token", res)
		}
		if _, err := b.Extend(ctx, lock.Request{Key: "k", Token: first.Token, TTL: time.Second}); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("Extend by the expired holder = %v, want %v", err, lock.ErrNotHeld)
		}
	})
}

// TestExpiredKeyNotResurrected pins that extending an expired key that no
// one took fails, rather than bringing it back.
func TestExpiredKeyNotResurrected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		res, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second})
		time.Sleep(time.Second)
		if _, err := b.Extend(ctx, lock.Request{Key: "k", Token: res.Token, TTL: time.Second}); !errors.Is(err, lock.ErrNotHeld) {
			t.Errorf("Extend after expiry = %v, want %v", err, lock.ErrNotHeld)
		}
		if n := b.Len(); n != 0 {
			t.Errorf("Len() = %d after the expired key was dropped, want 0", n)
		}
	})
}

// TestStarvingWaiterIsHandedKey pins the no-starvation rule: a waiter that
// has waited more than a millisecond gets the key from the release itself,
// so a caller arriving just after cannot take it.
func TestStarvingWaiterIsHandedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		held, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
		got := make(chan lock.Result)
		go func() {
			res, err := b.Wait(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true, Since: time.Now()}, time.Hour)
			if err != nil {
				t.Error(err)
			}
			got <- res
		}()
		synctest.Wait()
		time.Sleep(2 * time.Millisecond)
		b.Release(ctx, lock.Request{Key: "k", Token: held.Token})
		if res, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true}); res.Acquired {
			t.Error("a new caller took the key from a starving waiter")
		}
		if res := <-got; !res.Acquired || res.Token <= held.Token {
			t.Errorf("waiter got %+v, want the key", res)
		}
	})
}

// TestFreshWaiterCompetes pins the other half of the rule: a waiter that has
// not waited long is woken to compete, and a caller arriving at the release
// may take the key first, as with sync.Mutex; the waiter then gets it next.
func TestFreshWaiterCompetes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		held, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
		got := make(chan lock.Result)
		go func() {
			res, _ := b.Wait(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true, Since: time.Now()}, time.Hour)
			got <- res
		}()
		synctest.Wait()
		b.Release(ctx, lock.Request{Key: "k", Token: held.Token})
		barger, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
		if !barger.Acquired {
			t.Fatal("a caller arriving at the release did not get the free key")
		}
		synctest.Wait() // the waiter tried, failed, and queued again
		b.Release(ctx, lock.Request{Key: "k", Token: barger.Token})
		if res := <-got; !res.Acquired {
			t.Errorf("waiter got %+v after the second release, want the key", res)
		}
	})
}

// TestWaitTimesOut pins that Wait gives up after d and leaves no state.
func TestWaitTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		held, _ := b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
		start := time.Now()
		res, err := b.Wait(ctx, lock.Request{Key: "k", TTL: time.Second, Since: start}, 300*time.Millisecond)
		if err != nil || res.Acquired {
			t.Fatalf("Wait = %+v, %v; want not acquired", res, err)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Errorf("Wait returned after %v, want 300ms", d)
		}
		b.Release(ctx, lock.Request{Key: "k", Token: held.Token})
		if n := b.Len(); n != 0 {
			t.Errorf("Len() = %d, want 0", n)
		}
	})
}

// TestWaitWakesAtExpiry pins that a waiter takes a key whose holder stopped
// renewing when it expires, with no release and no sweeper.
func TestWaitWakesAtExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		start := time.Now()
		b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second})
		res, err := b.Wait(ctx, lock.Request{Key: "k", TTL: time.Second, Since: start}, time.Hour)
		if err != nil || !res.Acquired {
			t.Fatalf("Wait = %+v, %v; want the key", res, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("got the key after %v, want at the holder's expiry, 1s", d)
		}
	})
}

// TestCloseWakesWaiters pins that Close ends every wait with ErrClosed.
func TestCloseWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		ctx := context.Background()
		b.Acquire(ctx, lock.Request{Key: "k", TTL: time.Second, Renew: true})
		errc := make(chan error)
		go func() {
			_, err := b.Wait(ctx, lock.Request{Key: "k", TTL: time.Second, Since: time.Now()}, time.Hour)
			errc <- err
		}()
		synctest.Wait()
		b.Close()
		if err := <-errc; !errors.Is(err, lock.ErrClosed) {
			t.Errorf("Wait after Close = %v, want %v", err, lock.ErrClosed)
		}
		if _, err := b.Acquire(ctx, lock.Request{Key: "x", TTL: time.Second}); !errors.Is(err, lock.ErrClosed) {
			t.Errorf("Acquire after Close = %v, want %v", err, lock.ErrClosed)
		}
	})
}

// TestNoStateLeftAfterLoad pins that memory follows the keys in use: after
// many goroutines used many keys, nothing is left.
func TestNoStateLeftAfterLoad(t *testing.T) {
	b := newBackend(t)
	m := lock.New(b)
	defer m.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprint("key-", (g*31+i*7)%1000)
				l, err := m.Acquire(context.Background(), key)
				if err != nil {
					t.Error(err)
					return
				}
				l.Release(context.Background())
			}
		})
	}
	wg.Wait()
	if n := b.Len(); n != 0 {
		t.Errorf("Len() = %d after every lease ended, want 0", n)
	}
}

// TestExpiryDuringTableRebuild pins a bug found in review: an expired key
// freed by an attempt could be the last live key of a shard whose table was
// then rebuilt, and the attempt granted an entry no longer in the table, so
// that a second caller got the key too.
func TestExpiryDuringTableRebuild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(memory.New(memory.WithShards(1)))
		defer m.Close()
		ctx := context.Background()
		if _, err := m.Acquire(ctx, "x", lock.WithAutoExtend(false), lock.WithTTL(time.Second)); err != nil {
			t.Fatal(err)
		}
		var many []*lock.Lease
		for i := range 1100 { // past the size at which a shard's table is rebuilt
			l, err := m.Acquire(ctx, fmt.Sprint("k", i))
			if err != nil {
				t.Fatal(err)
			}
			many = append(many, l)
		}
		for _, l := range many {
			l.Release(ctx)
		}
		time.Sleep(time.Second) // x expires
		a, err := m.Acquire(ctx, "x", lock.WithAutoExtend(false), lock.WithTTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if b, err := m.TryAcquire(ctx, "x"); err == nil {
			t.Fatalf("two leases hold x: tokens %d and %d", a.Token(), b.Token())
		}
		a.Release(ctx)
		for i := range 20 { // push x through the idle keys
			l, err := m.Acquire(ctx, fmt.Sprint("again", i))
			if err != nil {
				t.Fatal(err)
			}
			l.Release(ctx)
		}
	})
}
