package lock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/benchutil"
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
// waited (see benchutil.MaxWait): every waiter should be served within 10ms, whatever
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
	km := benchutil.NewMapMutex()
	b.ReportAllocs()
	for b.Loop() {
		km.Lock("key")
		km.Unlock("key")
	}
}

func benchLockDistinct(b *testing.B) {
	m := newBenchMutex(b)
	ctx := context.Background()
	var keys benchutil.KeySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.Next()
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
	km := benchutil.NewMapMutex()
	var keys benchutil.KeySource
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := keys.Next()
		for pb.Next() {
			km.Lock(key)
			km.Unlock(key)
		}
	})
}

func benchLockHot(b *testing.B) {
	m := newBenchMutex(b)
	ctx := context.Background()
	var wait benchutil.MaxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.Merge(longest) }()
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
			last = benchutil.Lap(last, &longest)
		}
	})
	wait.Report(b)
}

func benchSyncHot(b *testing.B) {
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

func benchMapHot(b *testing.B) {
	km := benchutil.NewMapMutex()
	var wait benchutil.MaxWait
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var longest time.Duration
		defer func() { wait.Merge(longest) }()
		last := time.Now()
		for pb.Next() {
			km.Lock("key")
			km.Unlock("key")
			last = benchutil.Lap(last, &longest)
		}
	})
	wait.Report(b)
}
