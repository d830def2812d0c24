package rueidislock_test

// S9 of RELIABILITY.md §7: nodes on the AOF-always profile that stop,
// cleanly (SHUTDOWN) or not (SIGKILL), under load: exclusion and fencing
// hold, and keys come back with their absolute expiry [DL]: Redis 7 writes
// a PX TTL to the AOF as an absolute PXAT, so the time a node was down
// counts against the TTL, as it does on the nodes that stayed up.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
)

// s9Down is how long the stopped nodes stay down.
const s9Down = 300 * time.Millisecond

// TestS9PersistentRestarts: L-ci load (8 goroutines, 2 keys) on 5 AOF-always
// nodes while node 0 is shut down cleanly and restarted, then nodes 1 and 2
// are SIGKILLed together and restarted. O1 (no two holders at once) and O3
// (the fenced store accepts every write, with no token twice) are 0; a
// probe lease's key has, after each restart, the PTTL it had before minus
// the time the node was down.
func TestS9PersistentRestarts(t *testing.T) {
	servers := redistest.StartN(t, 5, redistest.WithPersistence())
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	m := lock.New(faultDial(t, addrs), lock.WithTTL(faultTTL))
	defer m.Close()
	bg := context.Background()

	// The probe: a lease that neither renews nor ends during the test, on
	// every node (after a first lease has loaded the scripts, so that no
	// node misses its node timeout).
	if l, err := acquireAfterRestart(m, "s9:warm"); err != nil {
		t.Fatal(err)
	} else {
		l.Release(bg)
	}
	const probeTTL = 20 * time.Second
	probe, err := m.Acquire(bg, "s9:probe", lock.WithTTL(probeTTL), lock.WithAutoExtend(false))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Release(bg)
	for i, s := range servers {
		if !pollUntil(faultNodeTimeout, func() bool { n, _ := s.Do("EXISTS", "s9:probe").AsInt64(); return n == 1 }) {
			t.Fatalf("node %d did not take the probe's key", i)
		}
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var (
		h            locktest.History
		store        locktest.FencedStore
		sections     atomic.Int64
		wg           sync.WaitGroup
		stop, cancel = context.WithCancel(bg)
		relMu        sync.Mutex
		relErrs      []error
	)
	for g := range 8 {
		key := fmt.Sprintf("s9:%d", g%2)
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() { // until stop
			holder := fmt.Sprintf("g%d", g)
			for stop.Err() == nil {
				l, err := m.Acquire(stop, key)
				if err != nil {
					if stop.Err() == nil && !errors.Is(err, lock.ErrClosed) { // closed: the test failed
						t.Errorf("%s: Acquire(%q): %v", holder, key, err)
					}
					return
				}
				sp := h.Acquired(holder, l)
				store.Write(key, holder, l.Token())
				time.Sleep(time.Duration(1+rng.IntN(4)) * time.Millisecond) // the critical section
				sp.End()
				sections.Add(1)
				if err := l.Release(bg); err != nil {
					// Not a safety matter: a lease cut short by a node
					// that went away mid-renewal. Logged.
					relMu.Lock()
					relErrs = append(relErrs, err)
					relMu.Unlock()
				}
			}
		})
	}

	// stopAndRestart stops the nodes with how, keeps them down for s9Down,
	// restarts them, and checks that the probe's key kept its expiry.
	stopAndRestart := func(what string, how func(*redistest.Server) error, nodes ...int) {
		t.Helper()
		before := make([]time.Duration, len(nodes))
		for k, n := range nodes {
			before[k] = s9PTTL(t, servers[n])
		}
		stopped := time.Now()
		for _, n := range nodes {
			if err := how(servers[n]); err != nil {
				t.Fatalf("%s node %d: %v", what, n, err)
			}
		}
		time.Sleep(s9Down) // the load runs on the other nodes meanwhile
		for _, n := range nodes {
			if err := servers[n].Restart(); err != nil {
				t.Fatalf("restart node %d after %s: %v", n, what, err)
			}
		}
		for k, n := range nodes {
			after := s9PTTL(t, servers[n])
			want := before[k] - time.Since(stopped)
			t.Logf("%s node %d: probe PTTL %v before, %v after %v; expected %v", what, n, before[k], after, time.Since(stopped).Round(time.Millisecond), want)
			// The readings take time on a loaded host: allow 250 ms either
			// way. A TTL counted again from the restart would be off by
			// the probe's age, 1.5 s or more.
			if d := after - want; d < -250*time.Millisecond || d > 250*time.Millisecond {
				t.Errorf("%s node %d: probe PTTL %v after the restart, want %v (%v before, less the %v since): the key did not keep its absolute expiry",
					what, n, after, want, before[k], time.Since(stopped))
			}
		}
	}

	time.Sleep(3 * faultTTL / 2) // load, and the probe's age, before the faults
	stopAndRestart("SHUTDOWN", (*redistest.Server).Shutdown, 0)
	time.Sleep(faultTTL / 2)
	stopAndRestart("SIGKILL", (*redistest.Server).Kill, 1, 2)
	time.Sleep(faultTTL) // the restarted nodes back in the load
	cancel()
	wg.Wait()

	t.Logf("%d critical sections, %d writes accepted, %d refused; %d release errors %v",
		sections.Load(), store.Accepted(), store.Rejected(), len(relErrs), relErrs)
	if err := h.CheckOverlap(); err != nil {
		t.Errorf("O1: %v", err)
	}
	if err := h.CheckTokens(); err != nil {
		t.Errorf("O3 (tokens): %v", err)
	}
	if err := store.Check(); err != nil {
		t.Errorf("O3 (duplicates): %v", err)
	}
	if n := store.Rejected(); n != 0 {
		t.Errorf("O3: the fenced store refused %d writes of holders: a token went back", n)
	}
	if sections.Load() < 100 {
		t.Errorf("only %d critical sections: the load did not run", sections.Load())
	}
}

// s9PTTL returns the probe key's PTTL on s.
func s9PTTL(t *testing.T, s *redistest.Server) time.Duration {
	t.Helper()
	ms, err := s.Do("PTTL", "s9:probe").AsInt64()
	if err != nil || ms < 0 {
		t.Fatalf("PTTL of the probe on %s = %d, %v: want the key with a TTL", s.Addr(), ms, err)
	}
	return time.Duration(ms) * time.Millisecond
}
