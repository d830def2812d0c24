package lock_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// BenchmarkMutex measures Acquire and Release on the memory backend in three
// shapes, each beside two baselines run the same way, so that
//
//	go test -run xxx -bench Mutex
//
// shows them side by side:
//
//   - uncontended: one goroutine, one key;
//   - distinct: b.RunParallel, each goroutine with a key of its own;
//   - hot: b.RunParallel, every goroutine on one key.
//
// The baselines are sync.Mutex (one per goroutine for distinct) and
// mapmutex, a map of mutexes behind one mutex, the simplest keyed lock. The
// hot shape also reports max-wait-ms, a bound on the longest time a lock call
// waited (see maxWait): every waiter should be served within 10ms, whatever
// the traffic. The benchmarks module compares the library with other keyed
// locks.
func BenchmarkMutex(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		b.Run("lock", benchLockUncontended)
		b.Run("syncmutex", benchSyncUncontended)
		b.Run("mapmutex", benchMapUncontended)
	})
	b.Run("distinct", func(b *testing.B) {
		b.Run("lock", benchLockDistinct)
		b.Run("syncmutex", benchSyncDistinct)
		b.Run("mapmutex", benchMapDistinct)
	})
	b.Run("hot", func(b *testing.B) {
		b.Run("lock", benchLockHot)
		b.Run("syncmutex", benchSyncHot)
		b.Run("mapmutex", benchMapHot)
	})
}

// newBenchMutex returns a Mutex on a fresh memory backend, closed when b ends.
func newBenchMutex(b *testing.B) *lock.Mutex {
	b.Helper()
	mb := memory.New()
	m := lock.New(mb)
	b.Cleanup(func() { m.Close() })
	return m
}

func benchLockUncontended(b *testing.B) {
	m := newBenchMutex(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := m.Acquire(ctx, "key")
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSyncUncontended(b *testing.B) {
	var mu sync.Mutex
	b.ReportAllocs()
	for b.Loop() {
		mu.Lock()
		//lint:ignore SA2001 an empty critical section is what is measured
		mu.Unlock()
	}
}

func benchMapUncontended(b *testing.B) {
	km := newMapMutex()
	b.ReportAllocs()
	for b.Loop() {
		km.Lock("key")
		km.Unlock("key")
	}
}

// keySource hands each goroutine of a RunParallel its own key, made before
// its loop so that the loop allocates nothing for keys.
type keySource struct{ n atomic.Int64 }

func (s *keySource) next() string {
	return "key-" + strconv.FormatInt(s.n.Add(1), 10)
}

func benchLockDistinct(b *testing.B) {
	m := newBenchMutex(b)
	ctx := context.Background()
	var keys keySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.next()
		for pb.Next() {
			l, err := m.Acquire(ctx, key)
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchSyncDistinct(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu := new(sync.Mutex) // one per goroutine, as a key per goroutine
		for pb.Next() {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
	})
}

func benchMapDistinct(b *testing.B) {
	km := newMapMutex()
	var keys keySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.next()
		for pb.Next() {
			km.Lock(key)
			km.Unlock(key)
		}
	})
}

// maxWait records the longest wait of a hot benchmark. Reading the clock
// costs about 50ns on a VM, as much as an uncontended sync.Mutex, so each
// goroutine reads it once per round, after unlocking, and records the longest
// time between the ends of two of its rounds: an upper bound on its longest
// wait that leaves the critical section as it is. Each goroutine keeps its own
// maximum and merges it once at the end, so that measuring adds no shared
// cache line to the contention being measured.
type maxWait struct{ ns atomic.Int64 }

// lap returns the time now, and raises *longest to the time since last.
func lap(last time.Time, longest *time.Duration) time.Time {
	now := time.Now()
	*longest = max(*longest, now.Sub(last))
	return now
}

func (w *maxWait) merge(d time.Duration) {
	for {
		old := w.ns.Load()
		if int64(d) <= old || w.ns.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (w *maxWait) report(b *testing.B) {
	b.ReportMetric(float64(w.ns.Load())/float64(time.Millisecond), "max-wait-ms")
}

func benchLockHot(b *testing.B) {
	m := newBenchMutex(b)
	ctx := context.Background()
	var wait maxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.merge(longest) }()
		last := time.Now()
		for pb.Next() {
			l, err := m.Acquire(ctx, "key")
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Release(ctx); err != nil {
				b.Error(err)
				return
			}
			last = lap(last, &longest)
		}
	})
	wait.report(b)
}

func benchSyncHot(b *testing.B) {
	var mu sync.Mutex
	var wait maxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.merge(longest) }()
		last := time.Now()
		for pb.Next() {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
			last = lap(last, &longest)
		}
	})
	wait.report(b)
}

func benchMapHot(b *testing.B) {
	km := newMapMutex()
	var wait maxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.merge(longest) }()
		last := time.Now()
		for pb.Next() {
			km.Lock("key")
			km.Unlock("key")
			last = lap(last, &longest)
		}
	})
	wait.report(b)
}

// mapMutex is the baseline keyed lock: one mutex guarding a map from key to
// a mutex and the number of callers using it, so that an unused key is
// dropped from the map.
type mapMutex struct {
	mu    sync.Mutex
	locks map[string]*mapEntry
}

type mapEntry struct {
	mu   sync.Mutex
	refs int // callers holding or waiting for mu; guarded by mapMutex.mu
}

func newMapMutex() *mapMutex {
	return &mapMutex{locks: make(map[string]*mapEntry)}
}

func (k *mapMutex) Lock(key string) {
	k.mu.Lock()
	e := k.locks[key]
	if e == nil {
		e = new(mapEntry)
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
}

func (k *mapMutex) Unlock(key string) {
	k.mu.Lock()
	e := k.locks[key]
	e.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
