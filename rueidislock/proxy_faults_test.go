package rueidislock_test

// Fault scenarios of RELIABILITY.md §7 on R5 under L-ci (baseline_test.go),
// injected through redistest's fault proxy or the nodes' admin commands:
// S5 (latency), S6 (lost replies), S7 (connection resets), S10 (a forward
// clock jump, a negative control), S13 (CLIENT PAUSE) and S14 (DEBUG
// SLEEP). Each in-model scenario ends with the safety oracles O1 and O3 on
// its load and the residue oracle O4; S10 must be detected by O1.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

// proxyRig is R5 with a fault proxy in front of each node.
type proxyRig struct {
	servers []*redistest.Server
	proxies []*redistest.Proxy
}

// startProxyRig starts five nodes and their proxies for t.
func startProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	servers, _ := startNodes(t, 5)
	r := &proxyRig{servers: servers}
	for _, s := range servers {
		r.proxies = append(r.proxies, redistest.StartProxy(t, s.Addr()))
	}
	return r
}

// view returns the addresses of client's view of the nodes: a client that
// dials them sees the faults set for client ("" is the default view).
func (r *proxyRig) view(t *testing.T, client string) []string {
	t.Helper()
	addrs := make([]string, len(r.proxies))
	for i, p := range r.proxies {
		addr, err := p.Listen(client)
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = addr
	}
	return addrs
}

// dial returns a Backend over client's view of the nodes, as faultDial
// does. Before it is closed, every fault is cleared: a connection that
// lost replies is then reset at once, where rueidis's Close would wait
// for them until its write timeout (10 s), even when t fails early.
func (r *proxyRig) dial(t *testing.T, client string) *rueidislock.Backend {
	t.Helper()
	b := faultDial(t, r.view(t, client))
	t.Cleanup(func() {
		for _, p := range r.proxies {
			p.Set(redistest.Pass())
		}
	})
	return b
}

// set sets f on every view of the nodes given.
func (r *proxyRig) set(t *testing.T, f redistest.Fault, nodes ...int) {
	t.Helper()
	for _, i := range nodes {
		if err := r.proxies[i].Set(f); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("nodes %v: %v", nodes, f)
}

// warm takes and releases a key, so that the connections are made and the
// scripts loaded before a fault.
func warm(t *testing.T, m *lock.Mutex, key string) {
	t.Helper()
	l, err := m.Acquire(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	l.Release(context.Background())
}

// teardown closes m and checks O4 on the namespace prefix: every lock key
// goes by its TTL, and only counters remain.
func teardown(t *testing.T, m *lock.Mutex, servers []*redistest.Server, prefix string) {
	t.Helper()
	m.Close()
	r := redistest.Residue{Match: prefix + "*", TTL: rigTTL}
	if err := r.Teardown(context.Background(), servers); err != nil {
		t.Errorf("O4: %v", err)
	}
}

// checkDeadlines makes n TryAcquires of fresh keys, each of which must
// succeed with Deadline() = sent + TTL - drift, sent being when TryAcquire
// was called: the validity counts from the request, not from the answer.
// The median offset must be within 1 ms (§7); each one at most 1 ms plus
// the call's time less minTrip, the least round trip the answers that
// make a majority can take, so that a deadline counted from any answer
// fails even on a call the host stalled. It returns the latencies of the
// calls that succeeded, and the errors of the others.
func checkDeadlines(t *testing.T, m *lock.Mutex, prefix string, n int, minTrip time.Duration) ([]time.Duration, []error) {
	t.Helper()
	ctx := context.Background()
	var lat, offs []time.Duration
	var failed []error
	for i := range n {
		key := fmt.Sprintf("%s:%d", prefix, i)
		sent := time.Now()
		l, err := m.TryAcquire(ctx, key, lock.WithAutoExtend(false))
		returned := time.Now()
		if err != nil {
			t.Logf("%s: TryAcquire: %v", key, err)
			failed = append(failed, err)
			continue
		}
		took := returned.Sub(sent)
		lat = append(lat, took)
		off := leaseDeadline(l).Sub(sent.Add(rigTTL - rigDrift))
		offs = append(offs, off)
		if off < 0 || off > time.Millisecond+took-minTrip {
			t.Errorf("%s: Deadline() is sent + TTL - drift %+v, want within [0, 1ms + %v - %v]: counted from after the request",
				key, off, took, minTrip)
		}
		l.Release(ctx)
	}
	if p := percentile(offs, .5); p > time.Millisecond {
		t.Errorf("%s: Deadline() is sent + TTL - drift + %v (median), want within 1ms", prefix, p)
	}
	return lat, failed
}

// TestS5Latency is S5. Latency of 40±10 ms each way on 2 nodes puts their
// round trips (60-100 ms) past the node timeout: locks are taken on the
// other three, each Deadline() counted from the request. Latency of 12±2 ms
// on 3 nodes makes every majority wait 20-28 ms for a slow node: the
// Deadline() must still be sent + TTL - drift, not the answer's time plus
// it. Then 80 ms on 3 nodes leaves no majority within the node timeout:
// attempts fail within it, and undo their keys on the slow nodes when
// those apply the late commands, long before the TTL could clean up.
//
// An acquire whose elapsed time reaches TTL - drift cannot be produced by
// latency here: every node call is bounded by the node timeout and by the
// attempt's deadline, and lock refuses a TTL below the drift plus two node
// timeouts. What is checked is that no grant comes after its deadline.
func TestS5Latency(t *testing.T) {
	r := startProxyRig(t)
	m := rigMutex(r.dial(t, ""))
	defer m.Close()
	warm(t, m, "s5:warm")
	ld := startLoad(t, m, "s5:key", seeded(t, "S5 load"))
	bound := faultNodeTimeout + latencyMargin

	r.set(t, redistest.Latency(40*time.Millisecond, 10*time.Millisecond), 3, 4)
	lat, failed := checkDeadlines(t, m, "s5:slow2", 50, 0)
	t.Logf("2 slow nodes: TryAcquire p50 %v p99 %v", percentile(lat, .5), percentile(lat, .99))
	if p := percentile(lat, .99); p > bound {
		t.Errorf("2 slow nodes: TryAcquire p99 %v, want <= %v", p, bound)
	}

	// Pass first: bytes held for 40 ms are delivered at once, instead of
	// delaying the next phase's requests behind them.
	r.set(t, redistest.Pass(), 3, 4)
	r.set(t, redistest.Latency(12*time.Millisecond, 2*time.Millisecond), 2, 3, 4)
	// Each way at least 10 ms: a majority answers after 20 ms at least.
	lat, failed3 := checkDeadlines(t, m, "s5:slow3", 50, 20*time.Millisecond)
	failed = append(failed, failed3...)
	t.Logf("3 nodes 12±2 ms: TryAcquire p50 %v p99 %v", percentile(lat, .5), percentile(lat, .99))
	if p := percentile(lat, 0); p < 20*time.Millisecond {
		t.Errorf("3 nodes 12±2 ms: a TryAcquire took %v, want >= 20ms: the latency was not on the majority's path", p)
	}
	if p := percentile(lat, .99); p > bound {
		t.Errorf("3 nodes 12±2 ms: TryAcquire p99 %v, want <= %v", p, bound)
	}
	// Enough of them to check the deadlines (see probes.checkBound).
	if len(failed) > 10 {
		t.Errorf("%d of 100 TryAcquires of fresh keys failed with a majority in time, want <= 10", len(failed))
	}

	r.set(t, redistest.Pass(), 2, 3, 4)
	r.set(t, redistest.Latency(80*time.Millisecond, 0), 2, 3, 4)
	ctx := context.Background()
	var fail []time.Duration
	for i := range 10 {
		key := fmt.Sprintf("s5:slow3x80:%d", i)
		start := time.Now()
		l, err := m.TryAcquire(ctx, key)
		returned := time.Now()
		if err == nil {
			l.Release(ctx)
			t.Errorf("%s: acquired with 3 of 5 nodes beyond the node timeout", key)
			continue
		}
		fail = append(fail, returned.Sub(start))
		if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want %v with the slow nodes' timeouts", key, err, lock.ErrNotAcquired)
		}
		for _, ne := range nodeErrors(err) {
			if ne.Node < 2 && !errors.Is(ne, context.DeadlineExceeded) {
				t.Errorf("%s: node %d, which is fast, failed: %v", key, ne.Node, ne)
			}
		}
		// Waiting for the slow nodes' answers would take their round
		// trip, 160 ms.
		if d := returned.Sub(start); d >= 160*time.Millisecond {
			t.Errorf("%s: failed after %v: it waited for the slow nodes", key, d)
		}
		// The slow nodes apply the attempt 80 ms after it was sent, and
		// its undo 80 ms after that was: the key goes from them within
		// about 3 x 80 ms of the return, a third of the TTL.
		checkGone(t, r.servers, returned.Add(rigTTL/3), key)
	}
	t.Logf("3 nodes 80 ms: TryAcquire failed in p50 %v max %v", percentile(fail, .5), percentile(fail, 1))
	if p := percentile(fail, .5); p > bound {
		t.Errorf("3 nodes 80 ms: TryAcquire failed in %v (median), want <= %v", p, bound)
	}

	r.set(t, redistest.Pass(), 2, 3, 4)
	ld.stop()
	ld.checkSafety(t)
	teardown(t, m, r.servers, "s5:")
}

// TestS6DropReplies is S6: nodes 3 and 4 apply every command but their
// replies are lost. A Release reaches them all the same (the key goes from
// the nodes that never answered the Acquire), a retry is never blocked by
// the keys its own failed attempt left on them, and once the fault is
// cleared nothing is left (O4).
func TestS6DropReplies(t *testing.T) {
	r := startProxyRig(t)
	m := rigMutex(r.dial(t, ""))
	defer m.Close()
	warm(t, m, "s6:warm")
	ld := startLoad(t, m, "s6:key", seeded(t, "S6 load"))
	r.set(t, redistest.DropReplies(), 3, 4)
	ctx := context.Background()

	// Enough of them to check the releases (see probes.checkBound).
	failed := 0
	for i := range 20 {
		key := fmt.Sprintf("s6:release:%d", i)
		l, err := m.TryAcquire(ctx, key, lock.WithAutoExtend(false))
		if err != nil {
			t.Logf("%s: TryAcquire with 2 nodes' replies lost: %v", key, err)
			if failed++; failed > 2 {
				t.Errorf("%d TryAcquires of fresh keys failed with 2 nodes' replies lost", failed)
			}
			continue
		}
		// The silent nodes applied the attempt too.
		for j, s := range r.servers[3:] {
			if !pollUntil(time.Second, func() bool { n, _ := s.Do("EXISTS", key).AsInt64(); return n == 1 }) {
				t.Fatalf("%s: node %d, whose replies are dropped, did not apply the attempt", key, 3+j)
			}
		}
		if err := l.Release(ctx); err != nil {
			t.Errorf("%s: Release: %v", key, err)
		}
		checkGone(t, r.servers, time.Now().Add(faultNodeTimeout), key)
		time.Sleep(ciRun / 40) // paces the probes over the load's run; nothing waits on them
	}

	// Nodes 0 and 1 hold the key for someone else for 100 ms: the first
	// attempt gets node 2 only (3 and 4 apply it silently) and fails. Had
	// it left its key on 2, 3 and 4, every retry would find them taken by
	// that stale value until its TTL ran out.
	const key = "s6:retry"
	for _, s := range r.servers[:2] {
		if err := s.Do("SET", key, "someone-else", "PX", "100").Error(); err != nil {
			t.Fatal(err)
		}
	}
	// Bounded: without the undo, each failed attempt's keys refuse the
	// next attempt, which fails and leaves its own, for minutes.
	actx, cancel := context.WithTimeout(ctx, 4*rigTTL)
	defer cancel()
	start := time.Now()
	l, err := m.Acquire(actx, key, lock.WithDelay(20*time.Millisecond), lock.WithJitter(5*time.Millisecond), lock.WithAutoExtend(false))
	took := time.Since(start)
	t.Logf("Acquire behind a 100 ms holder, 2 nodes silent: %v", took)
	if err != nil {
		t.Fatalf("Acquire behind a 100 ms holder, 2 nodes silent: not acquired in %v: %v", took, err)
	}
	l.Release(ctx)
	if took > rigTTL/2 {
		t.Errorf("Acquire behind a 100 ms holder took %v, want < TTL/2 = %v: a retry waited behind its own earlier attempt", took, rigTTL/2)
	}

	r.set(t, redistest.Pass(), 3, 4)
	ld.stop()
	ld.checkSafety(t)
	teardown(t, m, r.servers, "s6:")
}

// TestS7ConnectionResets is S7: every node's connections are reset at
// random times under load, while a lease renews. Resetting ~1 % of the
// connections per second, as §7 says, would not reset any in a 3 s run of
// one client with a few connections per node, so a random node's
// connections are all reset every 100-500 ms instead. Fresh keys are still
// locked (90 %, see probes.checkBound), the renewing lease is never lost
// and never extended past its TTL, every node serves again afterwards,
// O1 = 0, and no goroutine is left after Close (O6).
func TestS7ConnectionResets(t *testing.T) {
	r := startProxyRig(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := rueidislock.Dial(r.view(t, ""), rueidislock.WithNodeTimeout(faultNodeTimeout), rueidislock.WithClientOption(pipelined))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := rigMutex(b)
	defer m.Close()
	warm(t, m, "s7:warm")
	ctx := context.Background()
	renewing, err := m.Acquire(ctx, "s7:renewing")
	if err != nil {
		t.Fatal(err)
	}
	first := leaseDeadline(renewing)

	rng := seeded(t, "S7 load and resets")
	ld := startLoad(t, m, "s7:key", rng)
	stop := repeatFault(t, rng, 100*time.Millisecond, 400*time.Millisecond, func() error {
		// ResetConns then Pass: the current connections are reset once,
		// and new ones are served.
		p := r.proxies[rng.IntN(len(r.proxies))]
		return errors.Join(p.Set(redistest.ResetConns()), p.Set(redistest.Pass()))
	})
	pr := probe(m, "s7", 100, ciRun/100)
	resets := stop()
	var reset int64
	for _, p := range r.proxies {
		reset += p.Stats().Reset
	}
	t.Logf("%d reset rounds, %d connections reset", resets, reset)
	if reset == 0 {
		t.Error("no connection was reset: the scenario did not run")
	}
	pr.checkBound(t, "S7 resets", .9, 0)
	ld.stop()
	ld.checkSafety(t)

	if err := renewing.Err(); err != nil {
		t.Errorf("the renewing lease ended under connection resets: %v", err)
	} else if !leaseDeadline(renewing).After(first.Add(ciRun - rigTTL)) {
		t.Errorf("the renewing lease's deadline moved %v in %v: renewals stopped", leaseDeadline(renewing).Sub(first), ciRun)
	}
	// Renewal extends by the TTL, never more, whatever rueidis retried.
	res := redistest.Residue{Match: "s7:*", TTL: rigTTL}
	if err := res.Check(ctx, r.servers, map[string]bool{"s7:renewing": true}); err != nil {
		t.Errorf("O4 with the renewing lease held: %v", err)
	}
	if err := renewing.Release(ctx); err != nil {
		t.Errorf("Release of the renewing lease: %v", err)
	}

	// Every node serves again: with two others taken by someone else, a
	// lock needs the three left, node i among them. A call may meet a
	// connection reset a moment ago, so a few attempts are allowed.
	for i := range r.servers {
		key := fmt.Sprintf("s7:node:%d", i)
		for _, j := range []int{(i + 1) % 5, (i + 2) % 5} {
			if err := r.servers[j].Do("SET", key, "someone-else", "PX", "60000").Error(); err != nil {
				t.Fatal(err)
			}
		}
		l, err := m.Acquire(ctx, key, lock.WithRetry(5), lock.WithDelay(20*time.Millisecond), lock.WithAutoExtend(false))
		if err != nil {
			t.Errorf("node %d does not serve after the resets: %v", i, err)
			continue
		}
		l.Release(ctx)
		for _, j := range []int{(i + 1) % 5, (i + 2) % 5} {
			r.servers[j].Do("DEL", key)
		}
	}
	teardown(t, m, r.servers, "s7:")
	b.Close()
}

// TestS10ForwardClockJump is S10, a negative control: S8's schedule, with
// node 2's clock jumping forward (ForceExpire) instead of a restart. A
// holds the key on nodes 0, 1 and 2, the proxy hiding nodes 3 and 4 from
// it; node 2's copy expires early; B then gets nodes 2, 3 and 4 while A's
// lease lives. Redlock assumes bounded clock drift, so this is outside its
// model: O1 must detect the double holder. Fencing still holds, since the
// jump expired the key but not node 2's counter: B, whose clock is an hour
// behind and so proposes a token below A's, gets one above it, and A's
// later write is refused by the fenced store (O3).
//
// The second case shows what the counter bought: with node 2's counter
// lost too (as after a restart without persistence, F2), B's token falls
// below A's, which the token order of O3 detects.
func TestS10ForwardClockJump(t *testing.T) {
	r := startProxyRig(t)
	a := rigMutex(r.dial(t, "A"), lock.WithAutoExtend(false))
	bb := r.dial(t, "B")
	rueidislock.SetProposalClock(bb, func() time.Time { return time.Now().Add(-time.Hour) })
	b := rigMutex(bb, lock.WithAutoExtend(false))
	defer a.Close()
	defer b.Close()
	warm(t, a, "s10:warm")
	warm(t, b, "s10:warm")
	for _, p := range r.proxies[3:] {
		if err := p.SetFor("A", redistest.Blackhole()); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()

	// A and B may need a few attempts: every node of their majorities
	// must answer within the node timeout, which a loaded host misses at
	// times. The schedule, not their availability, is under test. (No
	// context with a timeout: it would bound the leases too.)
	retry := []lock.Option{lock.WithRetry(10), lock.WithDelay(10 * time.Millisecond), lock.WithJitter(time.Millisecond)}
	for _, counterLost := range []bool{false, true} {
		key := map[bool]string{false: "s10:job", true: "s10:job-counter-lost"}[counterLost]
		var hist locktest.History
		var store locktest.FencedStore
		leaseA, err := a.Acquire(ctx, key, retry...)
		if err != nil {
			t.Fatalf("A on nodes 0-2: %v", err)
		}
		spA := hist.Acquired("A", leaseA)
		if !store.Write(key, "A", leaseA.Token()) {
			t.Fatal("the store refused A's first write")
		}
		if err := r.servers[2].ForceExpire(key); err != nil {
			t.Fatal(err)
		}
		if counterLost {
			if err := r.servers[2].Do("EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0", "0", key+"\x00fence*").Error(); err != nil {
				t.Fatal(err)
			}
		}
		leaseB, err := b.Acquire(ctx, key, retry...)
		if err != nil {
			t.Fatalf("B after node 2's clock jumped: %v; the schedule should let B in", err)
		}
		spB := hist.Acquired("B", leaseB)
		if err := leaseA.Err(); err != nil {
			t.Fatalf("A's lease ended (%v) before B acquired: the schedule did not overlap", err)
		}
		if err := hist.CheckOverlap(); err == nil {
			t.Errorf("%s: O1 did not detect A and B holding the key at once", key)
		} else {
			t.Logf("%s: O1 detected, as it must: %v", key, err)
		}
		writeB := store.Write(key, "B", leaseB.Token())
		writeA := store.Write(key, "A", leaseA.Token())
		t.Logf("%s: A's token %d, B's %d; B's write accepted %v, A's later write accepted %v",
			key, leaseA.Token(), leaseB.Token(), writeB, writeA)
		spA.End()
		spB.End()
		leaseA.Release(ctx)
		leaseB.Release(ctx)
		if !counterLost {
			if leaseB.Token() <= leaseA.Token() {
				t.Errorf("B's token %d <= A's %d although node 2's counter survived the clock jump (O3)", leaseB.Token(), leaseA.Token())
			}
			if !writeB || writeA {
				t.Errorf("fenced store: B's write accepted %v, A's stale write accepted %v; want B's only (O3)", writeB, writeA)
			}
			if err := hist.CheckTokens(); err != nil {
				t.Errorf("O3: %v", err)
			}
			continue
		}
		if err := hist.CheckTokens(); err == nil {
			t.Errorf("%s: with node 2's counter lost, O3 saw no token regression (A %d, B %d)", key, leaseA.Token(), leaseB.Token())
		} else {
			t.Logf("%s: O3 detected, as it must: %v", key, err)
		}
	}

	for _, p := range r.proxies[3:] {
		if err := p.SetFor("A", redistest.Pass()); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	teardown(t, b, r.servers, "s10:")
}

// pause runs CLIENT PAUSE ms mode on each of servers. A paused node
// unpauses by itself; its admin connection is paused too meanwhile.
func pause(t *testing.T, d time.Duration, mode string, servers ...*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		if err := s.Do("CLIENT", "PAUSE", fmt.Sprint(d.Milliseconds()), mode).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestS13ClientPause is S13: CLIENT PAUSE WRITE on 2 nodes for TTL/2, then
// ALL on 3 nodes for 2 TTLs, under load. With 2 nodes paused, fresh keys
// are locked (95 %, see probes.checkBound) within the node timeout (p99,
// as S3); with 3, attempts fail
// within it, and a renewing lease is lost by its Deadline() + ε (as S4).
// O1 = 0, and the commands the paused nodes run late leave no key past its
// TTL (O4).
func TestS13ClientPause(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	m := rigMutex(faultDial(t, addrs))
	defer m.Close()
	warm(t, m, "s13:warm")
	ctx := context.Background()
	ld := startLoad(t, m, "s13:key", seeded(t, "S13 load"))
	bound := faultNodeTimeout + latencyMargin

	pause(t, rigTTL/2, "WRITE", servers[3:]...)
	pr := probe(m, "s13:write", 25, rigTTL/2/25)
	pr.checkBound(t, "2 nodes write-paused", .95, bound)

	renewing, err := m.Acquire(ctx, "s13:renewing")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan time.Time, 1)
	go func() {
		<-renewing.Done() // also makes the context, and its deadline timer
		ended <- time.Now()
	}()
	pause(t, 2*rigTTL, "ALL", servers[2:]...)
	paused := time.Now()
	var fail []time.Duration
	for i := range 10 {
		start := time.Now()
		l, err := m.TryAcquire(ctx, fmt.Sprintf("s13:all:%d", i))
		fail = append(fail, time.Since(start))
		if err == nil {
			l.Release(ctx)
			t.Errorf("acquired with 3 of 5 nodes paused")
		} else if !errors.Is(err, lock.ErrNotAcquired) {
			t.Errorf("TryAcquire with 3 of 5 nodes paused: %v, want %v", err, lock.ErrNotAcquired)
		}
		time.Sleep(10 * time.Millisecond) // paces the attempts; nothing waits on them
	}
	t.Logf("3 nodes paused: TryAcquire failed in p50 %v max %v", percentile(fail, .5), percentile(fail, 1))
	if p := percentile(fail, .99); p > bound {
		t.Errorf("3 nodes paused: TryAcquire p99 %v, want <= %v", p, bound)
	}
	select {
	case at := <-ended:
		t.Logf("the renewing lease ended %v after the pause", at.Sub(paused))
		checkOnTime(t, at, leaseDeadline(renewing))
	case <-time.After(2 * rigTTL):
		t.Fatalf("the renewing lease still live 2 TTLs after 3 of 5 nodes paused")
	}
	if err := renewing.Err(); !errors.Is(err, lock.ErrLeaseLost) {
		t.Errorf("Err() = %v, want %v", err, lock.ErrLeaseLost)
	}

	// The pause ends by itself; the load then goes on for a while.
	time.Sleep(time.Until(paused.Add(2*rigTTL + rigTTL/2))) // the pause's length is the schedule
	ld.stop()
	ld.checkSafety(t)
	renewing.Release(ctx)
	teardown(t, m, servers, "s13:")
}

// TestS14DebugSleep is S14: DEBUG SLEEP for 3 node timeouts on one random
// node at a time, under load. Fresh keys are locked (95 %) within the node
// timeout (p99), O1 = 0, and what the sleeping node runs late (attempts
// given up, undos) leaves no key past its TTL (O4).
func TestS14DebugSleep(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	m := rigMutex(faultDial(t, addrs))
	defer m.Close()
	warm(t, m, "s14:warm")
	rng := seeded(t, "S14 load and sleeps")
	ld := startLoad(t, m, "s14:key", rng)
	stop := repeatFault(t, rng, 100*time.Millisecond, 200*time.Millisecond, func() error {
		s := servers[rng.IntN(len(servers))]
		secs := fmt.Sprintf("%.3f", (3 * faultNodeTimeout).Seconds())
		ctx, cancel := context.WithTimeout(context.Background(), 10*faultNodeTimeout)
		defer cancel()
		if err := s.DoContext(ctx, "DEBUG", "SLEEP", secs).Error(); err != nil {
			return fmt.Errorf("DEBUG SLEEP %s: %w", secs, err)
		}
		return nil
	})
	pr := probe(m, "s14", 100, ciRun/100)
	sleeps := stop()
	t.Logf("%d sleeps of %v", sleeps, 3*faultNodeTimeout)
	if sleeps == 0 {
		t.Error("no node slept: the scenario did not run")
	}
	pr.checkBound(t, "S14 one node asleep", .95, faultNodeTimeout+latencyMargin)
	ld.stop()
	ld.checkSafety(t)
	teardown(t, m, servers, "s14:")
}

// repeatFault runs fault again and again, each time after a pause of
// between pause and pause+spread drawn from rng, until the returned stop
// is called; stop returns how many times fault succeeded. A fault that
// fails fails t and ends the repetition.
func repeatFault(t *testing.T, rng *rand.Rand, pause, spread time.Duration, fault func() error) (stop func() int) {
	done := make(chan struct{})
	var n int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(pause + time.Duration(rng.Int64N(int64(spread)))):
			}
			if err := fault(); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	})
	return func() int {
		close(done)
		wg.Wait()
		return n
	}
}
