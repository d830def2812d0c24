package rueidislock_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

// miniNodes starts n miniredis servers whose keys expire in real time, all
// stopped when t ends.
func miniNodes(t testing.TB, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		m := miniredis.RunT(t)
		expireInRealTime(t, m)
		addrs[i] = m.Addr()
	}
	return addrs
}

// expireInRealTime moves m's clock with the wall clock: miniredis counts
// TTLs down only when told to.
func expireInRealTime(t testing.TB, m *miniredis.Miniredis) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // returns when the test ends
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// pipelined makes rueidis start its connection goroutines at once rather
// than on the first concurrent command, so that the suite's goroutine counts
// see them as part of the backend, not as leaks.
func pipelined(o *rueidis.ClientOption) { o.AlwaysPipelining = true }

func dialMini(t *testing.T, n int) lock.Backend {
	// miniredis runs Lua in Go, slowly under the race detector and a busy
	// machine: a generous node timeout, and a TTL to fit two of them.
	b, err := rueidislock.Dial(miniNodes(t, n),
		rueidislock.WithNodeTimeout(250*time.Millisecond), rueidislock.WithClientOption(pipelined))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformanceMiniredis(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(map[int]string{1: "1node", 3: "3nodes"}[n], func(t *testing.T) {
			locktest.Run(t, func(t *testing.T) lock.Backend { return dialMini(t, n) },
				locktest.WithPolling(), locktest.WithTTL(time.Second))
		})
	}
}
