package memory

import (
	"testing"
	"time"

	"github.com/leaselock/lock"
)

// TestHashCollisions drives the table with keys that share one hash, which a
// 64-bit hash makes too rare to meet by chance: each key keeps its own
// state, and deleting one leaves the others.
func TestHashCollisions(t *testing.T) {
	s := &shard{entries: make(map[uint64]*entry)}
	const h = 42
	keys := []string{"a", "b", "c"}
	tokens := map[string]uint64{}
	for _, k := range keys {
		var res lock.Result
		s.tryLocked(h, &lock.Request{Key: k, TTL: time.Second, Renew: true}, &res)
		if !res.Acquired {
			t.Fatalf("key %q sharing a hash was refused", k)
		}
		tokens[k] = res.Token
	}
	for _, k := range keys {
		if e := s.lookup(h, k); e == nil || e.key != k || e.token != tokens[k] {
			t.Fatalf("lookup(%q) = %+v, want its own entry", k, e)
		}
	}
	// Free the middle key and push it out of the idle keys: it leaves the
	// chain, and the others stay.
	s.releaseLocked(s.lookup(h, "b"), time.Time{})
	for i := range maxIdle {
		var res lock.Result
		k := string(rune('A' + i))
		s.tryLocked(uint64(i), &lock.Request{Key: k, TTL: time.Second, Renew: true}, &res)
		s.releaseLocked(s.lookup(uint64(i), k), time.Time{})
	}
	if e := s.lookup(h, "b"); e != nil {
		t.Errorf("deleted key still found: %+v", e)
	}
	for _, k := range []string{"a", "c"} {
		if e := s.lookup(h, k); e == nil || e.token != tokens[k] {
			t.Errorf("lookup(%q) after deleting its neighbour = %+v", k, e)
		}
	}
	if got := s.count - s.nIdle; got != 2 {
		t.Errorf("%d live entries, want 2", got)
	}
}
