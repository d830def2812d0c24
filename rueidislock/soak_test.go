//go:build soak

package rueidislock_test

// The soak (tier T3 of RELIABILITY.md §11): opt-in, never in CI. Run
//
//	LOCK_SOAK=30m go test -tags soak -run Soak -timeout 2h -v ./rueidislock/
//
// (-v shows the summary tables of passing runs; LOCK_SOAK=2m for a short
// run, LOCK_SOAK_SEED to replay a schedule, LOCK_HISTORY_DIR to keep the
// histories of a failed run). TestSoakLocks is S20 under load L-soak;
// TestSoakTokens is F1 at soak size.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
)

const (
	// soakTTL and soakNodeTimeout are the defaults of §2 and §6.
	soakTTL         = time.Second
	soakNodeTimeout = 50 * time.Millisecond
)

// soakRun returns how long the soak runs (LOCK_SOAK) and its seed
// (LOCK_SOAK_SEED, or the time), and skips t when LOCK_SOAK is unset.
func soakRun(t *testing.T) (time.Duration, uint64) {
	t.Helper()
	raw := os.Getenv("LOCK_SOAK")
	if raw == "" {
		t.Skip("the soak runs only when LOCK_SOAK is set, e.g. LOCK_SOAK=30m")
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		t.Fatalf("LOCK_SOAK=%q: want a positive duration such as 30m", raw)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LOCK_SOAK_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LOCK_SOAK_SEED=%q: %v", s, err)
		}
	}
	t.Logf("soak for %v, seed %d (replay with LOCK_SOAK_SEED=%d)", d, seed, seed)
	return d, seed
}

// A soakSummary is the table a soak prints at its end.
type soakSummary struct {
	name       string
	seed       uint64
	rows       [][2]string
	violations [][2]string
}

func (s *soakSummary) add(name string, format string, args ...any) {
	s.rows = append(s.rows, [2]string{name, fmt.Sprintf(format, args...)})
}

// check records the violations of one oracle: 0 if err is nil.
func (s *soakSummary) check(t *testing.T, oracle string, err error) {
	t.Helper()
	n := 0
	if err != nil {
		// One line per violation, the first ten of them; checks that
		// found more end with "N ... in all".
		lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
		n = len(lines)
		if m := inAll.FindStringSubmatch(lines[n-1]); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		t.Errorf("%s: %v", oracle, err)
	}
	s.violations = append(s.violations, [2]string{oracle, strconv.Itoa(n)})
}

// inAll matches the last line of a check that found many violations.
var inAll = regexp.MustCompile(`(\d+) [a-z ]+ in all$`)

// print logs the table, and writes it to a file next to the histories.
func (s *soakSummary) print(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s summary (seed %d)\n", s.name, s.seed)
	for _, r := range s.rows {
		fmt.Fprintf(&b, "  %-32s %s\n", r[0], r[1])
	}
	fmt.Fprintf(&b, "  violations (each must be 0):\n")
	for _, r := range s.violations {
		fmt.Fprintf(&b, "    %-30s %s\n", r[0], r[1])
	}
	t.Log(b.String())
	dir := os.Getenv(locktest.HistoryDirEnv)
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-seed%d-summary.txt", s.name, s.seed))
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, []byte(b.String()), 0o644)
	}
	if err != nil {
		t.Logf("summary not written: %v", err)
	} else {
		t.Logf("summary written to %s", path)
	}
}

// TestSoakLocks is S20 under load L-soak: 4 client processes × 4
// goroutines contend for 4 keys on 5 nodes (AOF-always, behind proxies)
// while a nemesis injects a random fault every 2–5 s, drawn from S1, S3,
// S5, S6, S7, S13, S14, S15 and S16, on at most 2 nodes at once. Oracles:
// O1 on the merged histories, O2 on a counter shared by the processes, O3
// (tokens in acquisition order, and the fenced store: F5), O4 at the end.
func TestSoakLocks(t *testing.T) {
	d, seed := soakRun(t)
	servers := redistest.StartN(t, 5, redistest.WithPersistence())
	var proxies []*redistest.Proxy
	var addrs []string
	for _, s := range servers {
		p := redistest.StartProxy(t, s.Addr())
		proxies = append(proxies, p)
		addrs = append(addrs, p.Addr())
	}
	thawOnCleanup(t, servers...)
	keys := []string{"soak:k0", "soak:k1", "soak:k2", "soak:k3"}
	counter := filepath.Join(t.TempDir(), "counter")

	children := startChildren(t, 4, "c", childConfig{
		Addrs: addrs, Keys: keys, TTL: soakTTL, NodeTimeout: soakNodeTimeout,
		Goroutines: 4, Duration: d, Seed: seed, Counter: counter,
	})
	start := time.Now()

	nemesis := &redistest.Nemesis{
		Servers: servers, Proxies: proxies, TTL: soakTTL,
		MinGap: 2 * time.Second, MaxGap: 5 * time.Second,
		Rand: rand.New(rand.NewPCG(seed, 20)),
		Logf: t.Logf,
	}
	nctx, stop := context.WithTimeout(context.Background(), d)
	defer stop()
	var faults map[redistest.FaultKind]int
	var nemesisErr error
	var wg sync.WaitGroup
	wg.Go(func() { faults, nemesisErr = nemesis.Run(nctx) })

	sum := waitChildren(t, children, d+childWait)
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	if nemesisErr != nil {
		t.Errorf("nemesis: %v", nemesisErr)
	}

	rec := mergeHistories(t, children)
	var store locktest.FencedStore
	s := &soakSummary{name: "TestSoakLocks", seed: seed}
	s.add("duration", "%v", elapsed.Round(time.Second))
	s.add("operations (Acquire calls)", "%d", sum.Acquired+sum.Failed)
	s.add("acquisitions", "%d (%d intervals)", sum.Acquired, len(rec.Intervals))
	s.add("acquisitions/s", "%.1f", float64(sum.Acquired)/elapsed.Seconds())
	s.add("failed Acquire calls", "%d", sum.Failed)
	s.add("leases lost before release", "%d", sum.Lost)
	s.add("counted critical sections", "%d", sum.Counted)
	total := 0
	for _, k := range redistest.AllFaults {
		s.add("faults: "+string(k), "%d", faults[k])
		total += faults[k]
	}
	s.add("faults in all", "%d", total)
	s.check(t, "O1 overlap", rec.CheckOverlap())
	var lost error
	if v, err := sumCounters(counter, keys...); err != nil {
		lost = err
	} else if v != int64(sum.Counted) {
		lost = fmt.Errorf("counter %d after %d critical sections: %d updates lost", v, sum.Counted, int64(sum.Counted)-v)
	}
	s.check(t, "O2 lost updates", lost)
	s.check(t, "O3 token order", rec.CheckTokens())
	s.check(t, "O3 fenced store (F5)", rec.CheckFencing(&store))
	s.add("fenced writes", "%d accepted, %d stale refused", store.Accepted(), store.Rejected())
	ctx := context.Background()
	s.check(t, "O4 residue", redistest.Residue{Match: "soak:*", TTL: soakTTL}.Teardown(ctx, servers))
	s.print(t)
	if sum.Acquired == 0 {
		t.Error("no lease was acquired: the soak did not run")
	}
}

// TestSoakTokens is F1 at soak size: 10 000 sequential acquire/release
// cycles on 5 AOF-always nodes while random nodes, at most 2 at a time,
// are killed (SIGKILL) and restarted. Tokens strictly increase in the order
// Acquire returned them, with no duplicate.
func TestSoakTokens(t *testing.T) {
	_, seed := soakRun(t)
	servers := redistest.StartN(t, 5, redistest.WithPersistence())
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	m := lock.New(faultDial(t, addrs), lock.WithTTL(soakTTL), lock.WithAutoExtend(false))
	defer m.Close()
	rng := rand.New(rand.NewPCG(seed, 1))

	// The killer: every 20–200 ms, kill a running node if fewer than 2 are
	// down, else restart a down one.
	ctx, stop := context.WithCancel(context.Background())
	var kills, restarts int
	var killErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		krng := rand.New(rand.NewPCG(seed, 2))
		var down []int
		for {
			select {
			case <-ctx.Done():
				for _, i := range down {
					killErr = errors.Join(killErr, servers[i].Restart())
					restarts++
				}
				return
			case <-time.After(time.Duration(20+krng.IntN(180)) * time.Millisecond):
			}
			if len(down) < 2 && krng.IntN(2) == 0 {
				i := krng.IntN(len(servers))
				if slices.Contains(down, i) {
					continue
				}
				killErr = errors.Join(killErr, servers[i].Kill())
				down = append(down, i)
				kills++
			} else if len(down) > 0 {
				j := krng.IntN(len(down))
				killErr = errors.Join(killErr, servers[down[j]].Restart())
				down = slices.Delete(down, j, j+1)
				restarts++
			}
		}
	})

	const cycles = 10000
	start := time.Now()
	prev := make(map[string]uint64) // the last token of each key
	regressions := 0
	var errs []error
	failed := 0
	bg := context.Background()
	for i := range cycles {
		key := fmt.Sprintf("f1:k%d", rng.IntN(4))
		var l *lock.Lease
		for {
			var err error
			l, err = m.Acquire(bg, key, lock.WithRetry(100), lock.WithDelay(10*time.Millisecond), lock.WithJitter(5*time.Millisecond))
			if err == nil {
				break
			}
			if failed++; failed > 1000 {
				t.Fatalf("cycle %d: Acquire failed 1000 times with at most 2 of 5 nodes down: %v", i, err)
			}
		}
		if tok := l.Token(); tok <= prev[key] {
			regressions++
			if len(errs) < 10 {
				errs = append(errs, fmt.Errorf("cycle %d: key %q: token %d after %d", i, key, tok, prev[key]))
			}
		} else {
			prev[key] = tok
		}
		_ = l.Release(bg)
	}
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	if killErr != nil {
		t.Errorf("killer: %v", killErr)
	}
	s := &soakSummary{name: "TestSoakTokens", seed: seed}
	s.add("duration", "%v", elapsed.Round(time.Second))
	s.add("cycles", "%d", cycles)
	s.add("acquisitions/s", "%.1f", float64(cycles)/elapsed.Seconds())
	s.add("failed Acquire calls (retried)", "%d", failed)
	s.add("faults: SIGKILL", "%d", kills)
	s.add("faults: restarts", "%d", restarts)
	s.check(t, "F1 token order", errors.Join(errs...))
	s.print(t)
	if regressions > 0 {
		t.Errorf("%d token regressions in %d cycles", regressions, cycles)
	}
}
