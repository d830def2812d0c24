// Package benchutil holds what the library's benchmarks and the peer
// benchmarks of the benchmarks module share: the map-of-mutexes baseline,
// per-goroutine keys, and the longest-wait metric.
package benchutil

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// MapMutex is the baseline keyed lock: one mutex guarding a map from key to
// a mutex and the number of callers using it, so that an unused key is
// dropped from the map. Its zero value is not usable; call NewMapMutex.
type MapMutex struct {
	mu    sync.Mutex
	locks map[string]*mapEntry
}

type mapEntry struct {
	mu   sync.Mutex
	refs int // callers holding or waiting for mu; guarded by MapMutex.mu
}

// NewMapMutex returns an empty MapMutex.
func NewMapMutex() *MapMutex {
	return &MapMutex{locks: make(map[string]*mapEntry)}
}

// Lock locks key.
func (k *MapMutex) Lock(key string) {
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

// Unlock unlocks key, which must be locked.
func (k *MapMutex) Unlock(key string) {
	k.mu.Lock()
	e := k.locks[key]
	e.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}

// KeySource hands each goroutine of a RunParallel its own key, made before
// its loop so that the loop allocates nothing for keys.
type KeySource struct{ n atomic.Int64 }

// Next returns a key no earlier call returned.
func (s *KeySource) Next() string {
	return "key-" + strconv.FormatInt(s.n.Add(1), 10)
}

// MaxWait records the longest wait of a hot benchmark. Reading the clock
// inside the critical section would lengthen it, so each goroutine measures
// the time between the ends of two of its rounds: an upper bound on its
// longest wait that leaves the critical section as it is. Each goroutine
// keeps its own maximum and merges it once at the end, so that measuring
// adds no shared cache line to the contention being measured.
type MaxWait struct{ ns atomic.Int64 }

// Lap returns the time now, and raises *longest to the time since last.
func Lap(last time.Time, longest *time.Duration) time.Time {
	now := time.Now()
	*longest = max(*longest, now.Sub(last))
	return now
}

// Merge raises the recorded maximum to d.
func (w *MaxWait) Merge(d time.Duration) {
	for {
		old := w.ns.Load()
		if int64(d) <= old || w.ns.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Report reports the maximum as the metric max-wait-ms.
func (w *MaxWait) Report(b *testing.B) {
	b.ReportMetric(float64(w.ns.Load())/float64(time.Millisecond), "max-wait-ms")
}
