package locktest

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A FencedStore is a storage protected by fencing tokens (oracle O3): it
// accepts a write to a key only with a token greater than the last one it
// accepted for that key, or with that same token from the same holder, so
// that a holder may write several times under one lease. A holder whose
// lease ended without its noticing is refused once a newer holder wrote.
//
// It also detects two holders that present the same token for one key,
// which fencing must never allow. The zero FencedStore is empty and ready
// to use; it is safe for concurrent use.
type FencedStore struct {
	mu       sync.Mutex
	last     map[string]uint64            // last accepted token per key
	seen     map[string]map[uint64]string // per key, the holder of each token presented
	accepted int
	rejected int
	dups     []error
	ndups    int
}

// Write presents a write to key by holder under token, and reports whether
// the store accepted it.
func (s *FencedStore) Write(key, holder string, token uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = make(map[string]uint64)
		s.seen = make(map[string]map[uint64]string)
	}
	seen := s.seen[key]
	if seen == nil {
		seen = make(map[uint64]string)
		s.seen[key] = seen
	}
	same := false
	if h, ok := seen[token]; ok {
		if h != holder {
			s.ndups++
			if len(s.dups) < maxReported {
				s.dups = append(s.dups, fmt.Errorf("locktest: key %q: token %d presented by %s and by %s", key, token, h, holder))
			}
		} else {
			same = true
		}
	} else {
		seen[token] = holder
	}
	last, ok := s.last[key]
	if !ok || token > last || (token == last && same) {
		s.last[key] = token
		s.accepted++
		return true
	}
	s.rejected++
	return false
}

// Accepted returns the number of writes accepted.
func (s *FencedStore) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Rejected returns the number of stale writes refused: writes whose token
// was smaller than the last one accepted for the key.
func (s *FencedStore) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Last returns the last token accepted for key, and whether one was.
func (s *FencedStore) Last(key string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.last[key]
	return t, ok
}

// Check returns an error if two holders presented the same token for one
// key, and nil otherwise.
func (s *FencedStore) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return violations("duplicate tokens", s.ndups, s.dups)
}

// A Counter is the shared state of the lost-update oracle (O2): an integer
// that critical sections increment by reading it, pausing, and writing back
// the value read plus one. Under exclusion no increment is lost; when two
// sections overlap, one usually overwrites the other's. Reads and writes are
// atomic, so that the race detector does not report the overlaps the
// oracle exists to count.
//
// The zero Counter is 0 and ready to use.
type Counter struct {
	v atomic.Int64
}

// Increment reads the counter, calls pause if it is not nil, and writes back
// the value read plus one. Call it inside a critical section.
func (c *Counter) Increment(pause func()) {
	v := c.v.Load()
	if pause != nil {
		pause()
	}
	c.v.Store(v + 1)
}

// Value returns the counter's value.
func (c *Counter) Value() int64 { return c.v.Load() }

// Check returns an error unless the counter's value is sections: the number
// of critical sections that incremented it and ended with their lease still
// valid.
func (c *Counter) Check(sections int64) error {
	if v := c.Value(); v != sections {
		return fmt.Errorf("locktest: counter is %d after %d critical sections: %d updates lost", v, sections, sections-v)
	}
	return nil
}

// RandomPause returns a pause for Counter.Increment that sleeps a uniform
// random time in [0, limit): RELIABILITY.md's U(0, 0.1·TTL) is
// RandomPause(ttl/10). A limit of 0 or less yields the processor a random
// number of times (0 to 3) instead.
func RandomPause(limit time.Duration) func() {
	if limit <= 0 {
		return func() {
			for range rand.IntN(4) {
				runtime.Gosched()
			}
		}
	}
	return func() { time.Sleep(rand.N(limit)) }
}
