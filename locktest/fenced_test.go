package locktest

import (
	"strings"
	"sync"
	"testing"
)

func TestFencedStore(t *testing.T) {
	var s FencedStore
	steps := []struct {
		key, holder string
		token       uint64
		want        bool
	}{
		{"k", "a", 5, true},
		{"k", "a", 5, true},  // the same holder again, under one lease
		{"k", "b", 4, false}, // stale
		{"k", "b", 7, true},
		{"j", "c", 1, true}, // keys are independent
		{"k", "a", 5, false},
		{"k", "c", 7, false}, // a duplicate token: refused and reported
	}
	for i, st := range steps {
		if got := s.Write(st.key, st.holder, st.token); got != st.want {
			t.Errorf("step %d: Write(%q, %q, %d) = %v, want %v", i, st.key, st.holder, st.token, got, st.want)
		}
	}
	if got := s.Accepted(); got != 4 {
		t.Errorf("Accepted() = %d, want 4", got)
	}
	if got := s.Rejected(); got != 3 {
		t.Errorf("Rejected() = %d, want 3", got)
	}
	if last, ok := s.Last("k"); !ok || last != 7 {
		t.Errorf("Last(k) = %d, %v; want 7, true", last, ok)
	}
	if _, ok := s.Last("none"); ok {
		t.Errorf("Last of an unwritten key: ok = true")
	}
	err := s.Check()
	if err == nil || !strings.Contains(err.Error(), "token 7 presented by b and by c") {
		t.Errorf("Check() = %v, want the duplicate token 7", err)
	}
	var empty FencedStore
	if err := empty.Check(); err != nil {
		t.Errorf("Check() of an empty store = %v", err)
	}
}

// TestCounterLosesUpdates is the negative control of oracle O2: two
// increments that overlap lose one.
func TestCounterLosesUpdates(t *testing.T) {
	var c Counter
	c.Increment(func() { c.Increment(nil) }) // the second runs inside the first
	if got := c.Value(); got != 1 {
		t.Errorf("Value() = %d, want 1: the inner increment is lost", got)
	}
	if err := c.Check(2); err == nil || !strings.Contains(err.Error(), "1 updates lost") {
		t.Errorf("Check(2) = %v, want 1 update lost", err)
	}

	var d Counter
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				mu.Lock()
				d.Increment(RandomPause(0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := d.Check(800); err != nil {
		t.Errorf("increments under a mutex: %v", err)
	}
}

func TestRandomPause(t *testing.T) {
	RandomPause(0)()
	RandomPause(-1)()
	RandomPause(100 * 1000)() // 100µs
}
