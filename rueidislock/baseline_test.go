package rueidislock_test

// S0 of RELIABILITY.md §7, the baseline without faults, and the L-ci load
// that the proxy scenarios (proxy_faults_test.go) run under their faults:
// 8 goroutines contending for 2 keys on R5 (5 nodes, quorum 3), with the
// oracles O1 (overlap), O2 (lost update), O3 (fenced store) and O4
// (residue) checked at the end.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

const (
	// rigTTL, rigDriftFactor and the node timeout (faultNodeTimeout) are
	// the fault suite's settings (RELIABILITY.md §6).
	rigTTL         = time.Second
	rigDriftFactor = 0.01
	// rigDrift is the drift the Mutex subtracts from rigTTL: the factor's
	// share plus lock's fixed 2 ms.
	rigDrift = time.Duration(float64(rigTTL)*rigDriftFactor) + 2*time.Millisecond
	// ciWorkers and ciKeys are L-ci's contention.
	ciWorkers = 8
	ciKeys    = 2
	// ciRun is how long a scenario's load runs: about 3 TTLs (§6).
	ciRun = 3 * rigTTL
	// drainWait bounds how long stopping a load waits for the workers
	// to finish their sections before it cancels their Acquires (which
	// wait for ever while no majority answers).
	drainWait = 2 * rigTTL
)

// rigMutex returns a Mutex over b with the rig's TTL and drift; opts come
// after them.
func rigMutex(b *rueidislock.Backend, opts ...lock.Option) *lock.Mutex {
	return lock.New(b, append([]lock.Option{lock.WithTTL(rigTTL), lock.WithDriftFactor(rigDriftFactor)}, opts...)...)
}

// seeded returns a random source seeded from the clock, and logs the seed
// so that a failing schedule can be replayed.
func seeded(t *testing.T, what string) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("%s: seed %d", what, seed)
	return rand.New(rand.NewPCG(seed, 5))
}

// ciLoad is L-ci running on one Mutex: ciWorkers goroutines that acquire
// one of ciKeys keys at random, run a critical section, and release it.
// A section writes to a fenced store at its start and its end, and
// increments a lost-update counter in between, pausing U(0, TTL/10)
// between the read and the write (O2).
type ciLoad struct {
	m      *lock.Mutex
	prefix string

	hist     locktest.History     // O1, and O3's token order
	store    locktest.FencedStore // O3
	counters [ciKeys]locktest.Counter

	stopping atomic.Bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu       sync.Mutex
	sections [ciKeys]int64   // sections that ended with their lease valid
	lost     int             // sections whose lease ended before them
	refused  int             // writes refused while the lease was valid
	acquire  []time.Duration // Acquire latencies, waiting included
	errs     []error         // Acquire errors while the load ran
}

// startLoad starts L-ci on m, on keys prefix:0 and prefix:1, and returns
// once it runs steadily (waitSteady). The random choices of each worker
// come from rng's seed.
func startLoad(t *testing.T, m *lock.Mutex, prefix string, rng *rand.Rand) *ciLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ld := &ciLoad{m: m, prefix: prefix, cancel: cancel}
	for w := range ciWorkers {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		ld.wg.Go(func() { ld.work(ctx, fmt.Sprintf("w%d", w), wrng) })
	}
	ld.waitSteady(t)
	return ld
}

// waitSteady waits until the load has run ciWorkers sections, so that its
// start (every worker's first attempts, the connections its waits
// subscribe on) is over before a fault or a measurement begins.
func (ld *ciLoad) waitSteady(t *testing.T) {
	t.Helper()
	if !pollUntil(10*rigTTL, func() bool {
		ld.mu.Lock()
		defer ld.mu.Unlock()
		return ld.sections[0]+ld.sections[1]+int64(ld.lost) >= ciWorkers
	}) {
		t.Fatalf("load %s: fewer than %d sections in %v", ld.prefix, ciWorkers, 10*rigTTL)
	}
}

// work is one worker's loop.
func (ld *ciLoad) work(ctx context.Context, name string, rng *rand.Rand) {
	for !ld.stopping.Load() {
		k := rng.IntN(ciKeys)
		key := fmt.Sprintf("%s:%d", ld.prefix, k)
		start := time.Now()
		// Acquire's context also bounds the lease: ld.cancel ends both.
		l, err := ld.m.Acquire(ctx, key)
		took := time.Since(start)
		if err != nil {
			if ctx.Err() == nil {
				ld.mu.Lock()
				ld.errs = append(ld.errs, fmt.Errorf("%s: Acquire(%q): %w", name, key, err))
				ld.mu.Unlock()
			}
			if ctx.Err() != nil || errors.Is(err, lock.ErrClosed) {
				return
			}
			continue
		}
		if ld.stopping.Load() {
			l.Release(context.Background())
			return
		}
		sp := ld.hist.Acquired(name, l)
		refused := 0
		write := func() {
			if l.Err() == nil && !ld.store.Write(key, name, l.Token()) {
				refused++
			}
		}
		write()
		ld.counters[k].Increment(func() { time.Sleep(time.Duration(rng.Int64N(int64(rigTTL / 10)))) })
		write()
		valid := l.Err() == nil
		sp.End()
		l.Release(context.Background())

		ld.mu.Lock()
		ld.acquire = append(ld.acquire, took)
		ld.refused += refused
		if valid {
			ld.sections[k]++
		} else {
			ld.lost++
		}
		ld.mu.Unlock()
	}
}

// stop ends the load: no new section starts, the sections under way end,
// and after drainWait the Acquires still waiting are cancelled.
func (ld *ciLoad) stop() {
	ld.stopping.Store(true)
	done := make(chan struct{})
	go func() {
		ld.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainWait):
	}
	ld.cancel()
	<-done
}

// checkSafety checks O1 and O3 on the load's history, which must hold in
// every in-model run, and reports Acquire errors. It logs the figures.
func (ld *ciLoad) checkSafety(t *testing.T) {
	t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	t.Logf("load %s: %d sections valid to their end (%v per key), %d cut short by the lease's end; Acquire p50 %v p99 %v max %v (contended)",
		ld.prefix, ld.sections[0]+ld.sections[1], ld.sections, ld.lost,
		percentile(ld.acquire, .5), percentile(ld.acquire, .99), percentile(ld.acquire, 1))
	if err := ld.hist.CheckOverlap(); err != nil {
		t.Errorf("O1: %v", err)
	}
	if err := ld.hist.CheckTokens(); err != nil {
		t.Errorf("O3 token order: %v", err)
	}
	if err := ld.store.Check(); err != nil {
		t.Errorf("O3: %v", err)
	}
	if ld.refused > 0 {
		t.Errorf("O3: the fenced store refused %d writes made while their lease was valid: a newer token had written", ld.refused)
	}
	for _, err := range ld.errs {
		t.Errorf("load: %v", err)
	}
	if ld.sections[0]+ld.sections[1] == 0 {
		t.Errorf("load %s: no section ran", ld.prefix)
	}
}

// checkCounters checks O2: each key's counter equals the number of
// sections run under it, none lost to an overlap. It needs every lease
// valid to the end of its section, as in a run without faults.
func (ld *ciLoad) checkCounters(t *testing.T) {
	t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.lost > 0 {
		t.Errorf("%d leases ended inside their section without any fault", ld.lost)
	}
	for k := range ld.counters {
		if err := ld.counters[k].Check(ld.sections[k]); err != nil {
			t.Errorf("O2, key %d: %v", k, err)
		}
	}
}

// probes is a series of TryAcquires of fresh keys: uncontended attempts,
// whose latency a fault may bound.
type probes struct {
	lat    []time.Duration
	failed []error
}

// probe makes n TryAcquires of fresh keys prefix:probe:i, every gap,
// releasing each lease at once.
func probe(m *lock.Mutex, prefix string, n int, gap time.Duration) *probes {
	p := &probes{}
	ctx := context.Background()
	for i := range n {
		start := time.Now()
		l, err := m.TryAcquire(ctx, fmt.Sprintf("%s:probe:%d", prefix, i), lock.WithAutoExtend(false))
		p.lat = append(p.lat, time.Since(start))
		if err != nil {
			p.failed = append(p.failed, err)
		} else {
			l.Release(ctx)
		}
		time.Sleep(gap) // paces the probes; nothing waits on them
	}
	return p
}

// checkBound checks that at least the share minOK of the probes succeeded
// and that their p99 is at most bound (0: no bound). S1 asks 99 % of
// uncontended attempts; under a fault on a minority, a node call the host
// stalls past the node timeout fails an attempt that needs every other
// node, so the fault scenarios ask less where availability is not what
// they test.
func (p *probes) checkBound(t *testing.T, what string, minOK float64, bound time.Duration) {
	t.Helper()
	t.Logf("%s: %d probes, %d failed; p50 %v p99 %v max %v", what, len(p.lat), len(p.failed),
		percentile(p.lat, .5), percentile(p.lat, .99), percentile(p.lat, 1))
	for _, err := range p.failed[:min(len(p.failed), 3)] {
		t.Logf("%s: TryAcquire of a fresh key: %v", what, err)
	}
	if ok := len(p.lat) - len(p.failed); float64(ok) < minOK*float64(len(p.lat)) {
		t.Errorf("%s: %d of %d TryAcquires of fresh keys succeeded, want >= %.0f%%", what, ok, len(p.lat), 100*minOK)
	}
	if p99 := percentile(p.lat, .99); bound > 0 && p99 > bound {
		t.Errorf("%s: TryAcquire p99 %v, want <= %v", what, p99, bound)
	}
}

// timerLateness samples how late timers fire while fn runs: the ε of O5
// must exceed it (RELIABILITY.md §6).
func timerLateness(rng *rand.Rand, fn func()) []time.Duration {
	stop := make(chan struct{})
	var late []time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			d := time.Millisecond + time.Duration(rng.Int64N(int64(10*time.Millisecond)))
			start := time.Now()
			tm := time.NewTimer(d)
			select {
			case <-stop:
				tm.Stop()
				return
			case <-tm.C:
				late = append(late, time.Since(start)-d)
			}
		}
	})
	fn()
	close(stop)
	wg.Wait()
	return late
}

// cpuTime returns the CPU time the process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestS0Baseline is S0: L-ci on five healthy nodes. No overlap (O1), no
// lost update (O2), no stale or duplicate token (O3), no residue (O4), no
// goroutine left (O6); uncontended TryAcquire p99 within one node timeout;
// an idle Backend costs little CPU; and a blocked waiter gets the key
// within 10 ms (median) of its Release, through the release notification,
// since its retry delay is an hour and the holder's TTL a minute. Acquire latency and timer lateness are logged,
// not asserted: the lateness on this host is what ε (faultEpsilon) of the
// O5 checks must cover.
func TestS0Baseline(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := rueidislock.Dial(addrs, rueidislock.WithNodeTimeout(faultNodeTimeout), rueidislock.WithClientOption(pipelined))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := rigMutex(b)
	defer m.Close()
	ctx := context.Background()
	if l, err := m.Acquire(ctx, "s0:warm"); err != nil { // connections and scripts
		t.Fatal(err)
	} else {
		l.Release(ctx)
	}

	rng := seeded(t, "S0 load")
	ld := startLoad(t, m, "s0:key", rng)
	var pr *probes
	late := timerLateness(rng, func() {
		pr = probe(m, "s0", 100, ciRun/100)
	})
	ld.stop()
	ld.checkSafety(t)
	ld.checkCounters(t)
	pr.checkBound(t, "S0 uncontended", .99, faultNodeTimeout+latencyMargin)
	// Recorded, not asserted: the lateness is the host's (2 shared cores,
	// -race, other packages' tests), and it is what ε must cover.
	t.Logf("timer lateness under load: %d timers, p50 %v p99 %v max %v (ε = %v%s)",
		len(late), percentile(late, .5), percentile(late, .99), percentile(late, 1), faultEpsilon,
		map[bool]string{true: "; p99 above ε: O5 checks are at risk on this host", false: ""}[percentile(late, .99) > faultEpsilon])

	wakes := handOffs(t, servers, b, 10)
	// The spec's 10 ms holds for the median; a single hand-off may meet a
	// host stall (the timer lateness above), but even then comes TTL/10
	// after the Release at most: without the notification, the waiter
	// would wait for the holder's TTL, a minute.
	t.Logf("release to waiter's return: p50 %v max %v", percentile(wakes, .5), percentile(wakes, 1))
	if p := percentile(wakes, .5); p > 10*time.Millisecond {
		t.Errorf("the waiter returned %v after Release (median), want <= 10ms", p)
	}
	for i, d := range wakes {
		if d > rigTTL/10 {
			t.Errorf("hand-off %d: the waiter returned %v after Release, want <= %v", i, d, rigTTL/10)
		}
	}

	// Idle: connections open, the waiters' subscriptions lingering.
	before := cpuTime(t)
	const idle = 500 * time.Millisecond
	time.Sleep(idle) // the measurement is of doing nothing
	used := cpuTime(t) - before
	t.Logf("idle CPU: %v in %v", used, idle)
	if used > idle/2 {
		t.Errorf("idle Backend used %v of CPU in %v, want < 50%% of one core", used, idle)
	}

	m.Close()
	b.Close()
	r := redistest.Residue{Match: "s0:*", TTL: rigTTL}
	if err := r.Teardown(ctx, servers); err != nil {
		t.Errorf("O4: %v", err)
	}
}

// handOffs runs n hand-offs of a fresh key each: a holder holds it, a
// waiter whose retry delay is an hour blocks on it, and once the waiter
// listens on every node the holder releases. It returns the time from the
// Release call to the waiter's Acquire returning.
func handOffs(t *testing.T, servers []*redistest.Server, b *rueidislock.Backend, n int) []time.Duration {
	t.Helper()
	// The holder's TTL is long too: a waiter retries at the latest when
	// the holder's key would expire.
	m := rigMutex(b, lock.WithTTL(time.Minute), lock.WithDelay(time.Hour), lock.WithJitter(time.Millisecond), lock.WithAutoExtend(false))
	defer m.Close()
	ctx := context.Background()
	var wakes []time.Duration
	for i := range n {
		key := fmt.Sprintf("s0:wake:%d", i)
		held, err := m.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Time, 1)
		go func() {
			l, err := m.Acquire(ctx, key)
			got <- time.Now()
			if err != nil {
				t.Errorf("waiter: %v", err)
				return
			}
			l.Release(ctx)
		}()
		// A key of its own: its channel has a subscriber on a node only
		// once this waiter failed an attempt and waits.
		if !pollUntil(10*time.Second, func() bool { return subscribed(servers, key) }) {
			t.Fatal("the waiter did not subscribe to the release channel on every node")
		}
		start := time.Now()
		if err := held.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-got:
			wakes = append(wakes, at.Sub(start))
		case <-time.After(5 * time.Second): // far below the holder's TTL and the waiter's delay
			t.Fatalf("hand-off %d: the waiter was not woken by the release", i)
		}
	}
	return wakes
}

// subscribed reports whether every server has a subscriber to key's
// release channel.
func subscribed(servers []*redistest.Server, key string) bool {
	for _, s := range servers {
		v, err := s.Do("PUBSUB", "NUMSUB", "leaselock:released\x00"+key).ToArray()
		if err != nil || len(v) != 2 {
			return false
		}
		if n, _ := v[1].AsInt64(); n < 1 {
			return false
		}
	}
	return true
}

// TestResidueLayout runs O4's checker (redistest.Residue) on what this
// package leaves on a node: fencing counters of the three forms of
// keys.go, and the quarantine's birth mark. A second counter planted
// beside each real one must be reported, which shows that the checker
// reads the real counters' lock names: it knows this package's layout.
func TestResidueLayout(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	keys := []string{"res:plain", "res:{tag}x", "res:a{b"}
	for _, quarantine := range []bool{false, true} {
		var opts []rueidislock.Option
		if quarantine {
			// Every attempt is refused while the node is new, but sets its
			// birth mark.
			opts = append(opts, rueidislock.WithQuarantine(time.Hour))
		}
		b, err := rueidislock.Dial([]string{s.Addr()}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		m := lock.New(b, lock.WithTTL(time.Second))
		for _, k := range keys {
			l, err := m.TryAcquire(ctx, k)
			switch {
			case quarantine && err == nil:
				t.Errorf("TryAcquire(%q) on a new node in quarantine succeeded", k)
				l.Release(ctx)
			case !quarantine && err != nil:
				t.Fatalf("TryAcquire(%q): %v", k, err)
			case !quarantine:
				if err := l.Release(ctx); err != nil {
					t.Fatalf("Release(%q): %v", k, err)
				}
			}
		}
		m.Close()
		b.Close()
	}
	all, err := s.Do("KEYS", "*").AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	counters, birth := 0, false
	for _, k := range all {
		counters += strings.Count(k, "\x00fence")
		birth = birth || k == "leaselock\x00birth"
	}
	if counters != len(keys) || !birth {
		t.Fatalf("keys after the locks: %q; want %d counters and the birth mark", all, len(keys))
	}
	r := redistest.Residue{TTL: time.Second}
	servers := []*redistest.Server{s}
	if err := r.Teardown(ctx, servers); err != nil {
		t.Fatalf("Teardown after released locks: %v", err)
	}

	for _, planted := range []string{"res:plain\x00fence", "res:{tag}x\x00fence{1}", "res:a{b\x00fence"} {
		if err := s.Do("SET", planted, "1").Error(); err != nil {
			t.Fatal(err)
		}
	}
	err = r.Teardown(ctx, servers)
	for _, k := range keys {
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("lock name %q has 2 fencing counters", k)) {
			t.Errorf("Teardown with two counters of %q = %v, want them reported", k, err)
		}
	}
}
