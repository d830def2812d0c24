package lock

import (
	"testing"
	"testing/synctest"
)

// TestWaitStartsDiffer checks that no two waits of a Mutex get the same
// Request.Since, which rueidislock uses to name waiters on the server,
// even where the clock does not move between them: in a synctest bubble
// time.Now is the same for every call.
func TestWaitStartsDiffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(nil)
		seen := make(map[int64]bool)
		for range 100 {
			s := m.waitStart().UnixNano()
			if seen[s] {
				t.Fatalf("two waits began at %d", s)
			}
			seen[s] = true
		}
	})
}
