package benchmarks

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/locker"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// BenchmarkMemory compares in-process keyed locks in three shapes, as
// BenchmarkMemory/<shape>/<impl>; see the package documentation. Every
// implementation runs the same loop: lock a key, unlock it, with nothing
// in between.
func BenchmarkMemory(b *testing.B) {
	impls := []struct {
		name string
		new  func(b *testing.B) keyLocker
	}{
		{"lock", newLeaseLocker},
		{"moby", func(*testing.B) keyLocker { return mobyLocker{locker.New()} }},
		{"mapmutex", func(*testing.B) keyLocker { return newMapMutex() }},
		{"syncmutex", nil}, // no key: the sync* loops below
	}
	for _, shape := range []struct {
		name  string
		run   func(b *testing.B, l keyLocker)
		plain func(b *testing.B)
	}{
		{"uncontended", runUncontended, syncUncontended},
		{"distinct", runDistinct, syncDistinct},
		{"hot", runHot, syncHot},
		// Servers run many more goroutines than CPUs: 8 per CPU.
		{"distinct-x8", crowded(runDistinct), crowdedPlain(syncDistinct)},
		{"hot-x8", crowded(runHot), crowdedPlain(syncHot)},
	} {
		b.Run(shape.name, func(b *testing.B) {
			for _, impl := range impls {
				b.Run(impl.name, func(b *testing.B) {
					if impl.new == nil {
						shape.plain(b)
						return
					}
					shape.run(b, impl.new(b))
				})
			}
		})
	}
}

// crowded runs a parallel shape with 8 goroutines per CPU instead of one.
func crowded(run func(*testing.B, keyLocker)) func(*testing.B, keyLocker) {
	return func(b *testing.B, l keyLocker) {
		b.SetParallelism(8)
		run(b, l)
	}
}

// crowdedPlain is crowded for the sync.Mutex loops.
func crowdedPlain(run func(*testing.B)) func(*testing.B) {
	return func(b *testing.B) {
		b.SetParallelism(8)
		run(b)
	}
}

// A keyLocker is a keyed lock under test. lock returns what unlock needs,
// such as a Lease. The shapes call every keyed lock through this interface, so
// each pays the same dynamic call (a nanosecond or two); sync.Mutex, which has
// no key, gets loops of its own with direct calls.
type keyLocker interface {
	lock(key string) (held any)
	unlock(key string, held any)
}

// leaseLocker is this library on its memory backend, with default options.
type leaseLocker struct {
	m   *lock.Mutex
	ctx context.Context
}

func newLeaseLocker(b *testing.B) keyLocker {
	mb := memory.New()
	m := lock.New(mb)
	b.Cleanup(func() { m.Close() })
	return leaseLocker{m: m, ctx: context.Background()}
}

func (l leaseLocker) lock(key string) any {
	lease, err := l.m.Acquire(l.ctx, key)
	if err != nil {
		panic(err)
	}
	return lease
}

func (l leaseLocker) unlock(_ string, held any) {
	if err := held.(*lock.Lease).Release(l.ctx); err != nil {
		panic(err)
	}
}

// mobyLocker is github.com/moby/locker: a map of reference-counted mutexes
// behind one mutex.
type mobyLocker struct{ l *locker.Locker }

func (m mobyLocker) lock(key string) any { m.l.Lock(key); return nil }

func (m mobyLocker) unlock(key string, _ any) {
	if err := m.l.Unlock(key); err != nil {
		panic(err)
	}
}

func runUncontended(b *testing.B, l keyLocker) {
	b.ReportAllocs()
	for b.Loop() {
		l.unlock("key", l.lock("key"))
	}
}

func runDistinct(b *testing.B, l keyLocker) {
	var keys keySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.next()
		for pb.Next() {
			l.unlock(key, l.lock(key))
		}
	})
}

func runHot(b *testing.B, l keyLocker) {
	var wait maxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.merge(longest) }()
		last := time.Now()
		for pb.Next() {
			l.unlock("key", l.lock("key"))
			last = lap(last, &longest)
		}
	})
	wait.report(b)
}

func syncUncontended(b *testing.B) {
	var mu sync.Mutex
	b.ReportAllocs()
	for b.Loop() {
		mu.Lock()
		//lint:ignore SA2001 an empty critical section is what is measured
		mu.Unlock()
	}
}

func syncDistinct(b *testing.B) {
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

func syncHot(b *testing.B) {
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

// keySource hands each goroutine of a RunParallel its own key, made before
// its loop so that the loop allocates nothing for keys.
type keySource struct{ n atomic.Int64 }

func (s *keySource) next() string {
	return "key-" + strconv.FormatInt(s.n.Add(1), 10)
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

func (k *mapMutex) lock(key string) any {
	k.mu.Lock()
	e := k.locks[key]
	if e == nil {
		e = new(mapEntry)
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return nil
}

func (k *mapMutex) unlock(key string, _ any) {
	k.mu.Lock()
	e := k.locks[key]
	e.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
