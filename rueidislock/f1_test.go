package rueidislock_test

// F1 of RELIABILITY.md §7: fencing tokens strictly increase across crashes
// of nodes that keep their data (appendonly, appendfsync always), §4.3 (i).

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// f1Cycles is the number of acquire/release cycles in CI (T2).
const f1Cycles = 300

// TestF1TokensAcrossCrashes: sequential acquire/release cycles of one key
// on 5 AOF-always nodes, while a random schedule SIGKILLs nodes and
// restarts them, at most 2 down at once. Tokens strictly increase in the
// order Acquire returned them, so no token is given twice.
//
// Two clients alternate at random: one proposes tokens from a clock an
// hour ahead, the other from the true clock. After the first, every node
// that stored a proposal holds a counter above the second's proposals,
// which must then take the second round of fencing (max counter + 1):
// its token is right only if a node of the previous holder's majority
// kept its counter through the crashes. A single client on one clock
// would propose ever larger times and pass even on nodes that forget.
func TestF1TokensAcrossCrashes(t *testing.T) {
	servers := redistest.StartN(t, 5, redistest.WithPersistence())
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	ahead := faultDial(t, addrs)
	rueidislock.SetProposalClock(ahead, func() time.Time { return time.Now().Add(time.Hour) })
	clients := []*lock.Mutex{
		lock.New(ahead, lock.WithTTL(time.Second), lock.WithAutoExtend(false)),
		lock.New(faultDial(t, addrs), lock.WithTTL(time.Second), lock.WithAutoExtend(false)),
	}
	for _, m := range clients {
		defer m.Close()
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	bg := context.Background()

	var (
		last             uint64
		up               = []int{0, 1, 2, 3, 4}
		down             []int
		kills, restarts  int
		byClient         [2]int
		lat              []time.Duration
		regressions, dup int
	)
	for i := range f1Cycles {
		// Before one cycle in ten, a burst of 1 to 4 faults, each a SIGKILL
		// with an instant restart, a SIGKILL while fewer than two nodes are
		// down, or the restart of a node that is down. A burst can crash
		// more nodes than a majority one after the other, which nodes that
		// forget their data do not survive (the negative control).
		if rng.IntN(10) == 0 {
			for range 1 + rng.IntN(4) {
				switch {
				case len(down) > 0 && (len(down) == 2 || rng.IntN(3) == 0):
					k := rng.IntN(len(down))
					n := down[k]
					down = slices.Delete(down, k, k+1)
					if err := servers[n].Restart(); err != nil { // Restart waits for PING
						t.Fatal(err)
					}
					up = append(up, n)
					restarts++
				case rng.IntN(2) == 0:
					n := up[rng.IntN(len(up))]
					if err := servers[n].Restart(); err != nil { // SIGKILL, then start
						t.Fatal(err)
					}
					kills++
					restarts++
				default:
					k := rng.IntN(len(up))
					n := up[k]
					up = slices.Delete(up, k, k+1)
					if err := servers[n].Kill(); err != nil {
						t.Fatal(err)
					}
					down = append(down, n)
					kills++
				}
			}
			// Other traffic reconnects the clients to the restarted nodes
			// and reloads the scripts there, so that those nodes answer
			// the next cycle as fast as the others.
			for _, m := range clients {
				if l, err := acquireAfterRestart(m, "f1:other"); err == nil {
					l.Release(bg)
				}
			}
		}
		c := rng.IntN(2)
		start := time.Now()
		// Nodes just restarted reconnect and reload the scripts, which a
		// loaded host does not always fit in one node timeout: retries.
		l, err := acquireAfterRestart(clients[c], "f1")
		lat = append(lat, time.Since(start))
		if err != nil {
			t.Fatalf("cycle %d (client %d, nodes %v down): Acquire: %v", i, c, down, err)
		}
		byClient[c]++
		if tok := l.Token(); tok <= last {
			if tok == last {
				dup++
			} else {
				regressions++
			}
			t.Errorf("cycle %d (client %d, nodes %v down): token %d after %d", i, c, down, tok, last)
		}
		last = max(last, l.Token())
		if err := l.Release(bg); err != nil {
			// Not what F1 checks: the key then expires by its TTL, and
			// the next cycle waits for it.
			t.Logf("cycle %d (nodes %v down): Release: %v", i, down, err)
		}
	}
	t.Logf("%d cycles (%d ahead, %d true clock), %d kills, %d restarts: %d regressions, %d duplicates; Acquire p50 %v p99 %v max %v",
		f1Cycles, byClient[0], byClient[1], kills, restarts, regressions, dup,
		percentile(lat, .5), percentile(lat, .99), percentile(lat, 1))
	if kills < 5 {
		t.Errorf("only %d kills in %d cycles: the schedule did not crash nodes (seed %d)", kills, f1Cycles, seed)
	}
}
