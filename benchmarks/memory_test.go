package benchmarks

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moby/locker"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/benchutil"
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
	var keys benchutil.KeySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.Next()
		for pb.Next() {
			l.unlock(key, l.lock(key))
		}
	})
}

func runHot(b *testing.B, l keyLocker) {
	var wait benchutil.MaxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.Merge(longest) }()
		last := time.Now()
		for pb.Next() {
			l.unlock("key", l.lock("key"))
			last = benchutil.Lap(last, &longest)
		}
	})
	wait.Report(b)
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
	var wait benchutil.MaxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.Merge(longest) }()
		last := time.Now()
		for pb.Next() {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
			last = benchutil.Lap(last, &longest)
		}
	})
	wait.Report(b)
}

// mapMutex is the map-of-mutexes baseline as a keyLocker.
type mapMutex struct{ *benchutil.MapMutex }

func newMapMutex() mapMutex { return mapMutex{benchutil.NewMapMutex()} }

func (k mapMutex) lock(key string) any { k.Lock(key); return nil }

func (k mapMutex) unlock(key string, _ any) { k.Unlock(key) }
