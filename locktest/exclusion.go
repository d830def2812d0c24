package locktest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/leaselock/lock"
)

// G1: many goroutines on one hot key.
func testExclusionOneKey(s *suite) { s.exclusion(1, 16, 40) }

// G1: many goroutines on a few keys, so that keys are held side by side.
func testExclusionFewKeys(s *suite) { s.exclusion(3, 16, 40) }

// exclusion runs workers goroutines that each enter rounds critical sections
// on nkeys keys, some with Acquire and Release, some with WithLock, some with
// Do, and checks the record with every oracle: no two sections of a key
// overlap (O1), tokens increase (O3) and a fenced store accepts them all, and
// a counter updated read-modify-write loses no update (O2).
func (s *suite) exclusion(nkeys, workers, rounds int) {
	t := s.t
	m := s.mutex(s.retryOpts()...)
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = s.key(fmt.Sprintf("k%d", i))
	}
	var (
		h        History
		store    FencedStore
		counters = make([]Counter, nkeys)
		sections = make([]atomic.Int64, nkeys) // that ended with a valid lease
		inside   = make([]atomic.Int32, nkeys) // goroutines in a section now
		pause    = RandomPause(0)
	)
	critical := func(ctx context.Context, ki int, holder string, token uint64) {
		key := keys[ki]
		if n := inside[ki].Add(1); n != 1 {
			t.Errorf("key %q: %d holders in a critical section at once", key, n)
		}
		if token != 0 && !store.Write(key, holder, token) {
			t.Errorf("key %q: fenced store refused token %d of %s: a larger token was written before", key, token, holder)
		}
		counters[ki].Increment(pause)
		ok := ctx.Err() == nil
		inside[ki].Add(-1)
		if ok {
			sections[ki].Add(1)
		} else {
			t.Errorf("key %q: the lease of %s ended in its critical section: %v", key, holder, context.Cause(ctx))
		}
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			holder := fmt.Sprintf("worker%d", w)
			for r := range rounds {
				ki := (w + r) % nkeys
				key := keys[ki]
				var err error
				switch w % 3 {
				case 0:
					var l *lock.Lease
					if l, err = m.Acquire(s.ctx, key); err != nil {
						break
					}
					sp := h.Acquired(holder, l)
					critical(l.Context(), ki, holder, l.Token())
					sp.End()
					err = l.Release(s.ctx)
				case 1:
					err = lock.WithLock(s.ctx, m, key, func(ctx context.Context) error {
						sp := h.Start(ctx, key, holder, 0)
						critical(ctx, ki, holder, 0)
						sp.End()
						return nil
					})
				case 2:
					var v int
					v, err = lock.Do(s.ctx, m, key, func(ctx context.Context) (int, error) {
						sp := h.Start(ctx, key, holder, 0)
						critical(ctx, ki, holder, 0)
						sp.End()
						return r, nil
					})
					if err == nil && v != r {
						t.Errorf("Do() = %d, want fn's result %d", v, r)
					}
				}
				if err != nil {
					t.Errorf("%s, round %d on key %q: %v", holder, r, key, err)
					return
				}
			}
		})
	}
	wg.Wait()

	if n := h.Len(); n != workers*rounds {
		t.Errorf("history has %d critical sections, want %d", n, workers*rounds)
	}
	if err := h.CheckOverlap(); err != nil {
		t.Error(err)
	}
	if err := h.CheckTokens(); err != nil {
		t.Error(err)
	}
	if err := store.Check(); err != nil {
		t.Error(err)
	}
	if n := store.Rejected(); n != 0 {
		t.Errorf("fenced store refused %d writes made under valid leases", n)
	}
	for i := range keys {
		if err := counters[i].Check(sections[i].Load()); err != nil {
			t.Errorf("key %q: %v", keys[i], err)
		}
	}
	for _, key := range keys {
		s.expectFree(m, key)
	}
}
