package rueidislock_test

// Fencing scenarios F3 and F6 of RELIABILITY.md §7, as checks that return
// their violations, so that TestNegativeControls runs them on M5 and M8.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// counterOn returns the fencing counter fk on s, 0 if it is not set.
func counterOn(t *testing.T, s *redistest.Server, fk string) uint64 {
	t.Helper()
	v, err := s.Do("GET", fk).ToString()
	if rueidis.IsRedisNil(err) {
		return 0
	}
	if err != nil {
		t.Fatalf("GET %q: %v", fk, err)
	}
	c, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("counter %q = %q: %v", fk, v, err)
	}
	return c
}

// checkF3 is F3. A's clock is an hour behind, so its attempt takes the
// second round of fencing, with token Y+1: node 0 knows a counter Y from a
// client two hours ahead, and A, cut off from node 2, decides on nodes 0
// and 1. The afterRoundOne hook then holds A's requests in the network for
// 4 TTLs. (A pause of A itself would send nothing: a call whose context
// has ended never leaves the client.) A's Acquire fails within its
// deadline, and its keys expire. B, cut off from node 0, takes the key on
// nodes 1 and 2 in one round, with a token below Y. When A's late second
// round reaches nodes 0 and 1, the guard refuses it: the counters stay as
// they were, although Y+1 is above node 1's. The next holder's token is
// above every earlier token. It catches M5, which raises node 1's counter
// to Y+1 while B holds the key there.
func checkF3(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	const (
		ttl  = 300 * time.Millisecond
		late = 4 * ttl // how long A's second round is held in the network
	)
	servers, _ := startNodes(t, 3)
	proxies := make([]*redistest.Proxy, len(servers))
	aAddrs := make([]string, len(servers))
	bAddrs := make([]string, len(servers))
	for i, s := range servers {
		proxies[i] = redistest.StartProxy(t, s.Addr())
		var errA, errB error
		aAddrs[i], errA = proxies[i].Listen("A")
		bAddrs[i], errB = proxies[i].Listen("B")
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
	}
	a := dialFor(t, aAddrs, mutate)
	b := dialFor(t, bAddrs, mutate)
	ma := lock.New(a, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	defer ma.Close()
	mb := lock.New(b, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	defer mb.Close()
	defer func() { // let the connections close at once
		for _, p := range proxies {
			_ = p.Set(redistest.Pass())
		}
	}()
	ctx := context.Background()
	const key = "{f3}"
	fk := rueidislock.FenceKey(key)

	// A decides on nodes 0 and 1, and so sees Y below; B on nodes 1 and 2,
	// which both store its proposal.
	rueidislock.SetProposalClock(a, func() time.Time { return time.Now().Add(-time.Hour) })
	if err := proxies[2].SetFor("A", redistest.Blackhole()); err != nil {
		t.Fatal(err)
	}
	// Earlier holders: B, then A, whose clock behind takes the second
	// round, on nodes 0 and 1. That loads its script there, as on any node
	// that has run it: A's late second round is an EVALSHA, which on a node
	// without the script would fail with NOSCRIPT, and never run.
	var tokens []uint64
	for _, m := range []*lock.Mutex{mb, ma} {
		l, err := m.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, l.Token())
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Two attempts of A that fail, each refused by one of nodes 0 and 1
	// (a foreign value there), load the script that undoes a grant on the
	// other: A's late second round is followed by its undo.
	for _, refuser := range servers[:2] {
		if err := refuser.Do("SET", key, "foreign", "PX", "60000").Error(); err != nil {
			t.Fatal(err)
		}
		if l, err := ma.TryAcquire(ctx, key); err == nil {
			l.Release(ctx)
			t.Fatal("A acquired with one node of two refusing")
		}
		if err := refuser.Do("DEL", key).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// A release or an undo returns before a node that granted late has
	// undone its grant: start from a free key.
	for i, s := range servers {
		if !gone(s, key, time.Second) {
			t.Fatalf("node %d keeps %q after the earlier holders released it", i, key)
		}
	}
	y := uint64(time.Now().Add(2 * time.Hour).UnixMicro())
	if err := servers[0].Do("SET", fk, strconv.FormatUint(y, 10)).Error(); err != nil {
		t.Fatal(err)
	}
	if err := proxies[0].SetFor("B", redistest.Blackhole()); err != nil {
		t.Fatal(err)
	}
	noscript := func(s *redistest.Server) int64 {
		return infoField(t, s, "errorstats", "errorstat_NOSCRIPT", "count")
	}
	noscripts := []int64{noscript(servers[0]), noscript(servers[1])}

	var hooked atomic.Bool
	repliesBefore := make([]int64, 2)
	rueidislock.SetAfterRoundOne(a, func() {
		if hooked.Swap(true) {
			return
		}
		for i, p := range proxies[:2] {
			repliesBefore[i] = p.StatsFor("A").Replies
			if err := p.SetFor("A", redistest.Latency(late, 0).Only(redistest.Requests)); err != nil {
				t.Error(err)
			}
		}
	})
	l, err := ma.TryAcquire(ctx, key)
	if err == nil {
		violations = append(violations, fmt.Sprintf("A acquired with token %d although its second round could not land before its deadline", l.Token()))
		l.Release(ctx)
	}
	if !hooked.Load() {
		t.Fatalf("A did not take the second round of fencing: TryAcquire = %v", err)
	}

	// A's keys on nodes 0 and 1 expire by its TTL; then B takes the key.
	for i, s := range servers[:2] {
		if !gone(s, key, 2*ttl) {
			t.Fatalf("node %d keeps A's key past its TTL", i)
		}
	}
	lb, err := mb.Acquire(ctx, key, lock.WithTTL(time.Minute)) // held while A's second round lands
	if err != nil {
		t.Fatalf("B's Acquire once A's keys expired: %v", err)
	}
	holders(t, servers[1:], key, time.Second) // B's attempt has landed on both
	if lb.Token() >= y {
		t.Fatalf("B's token %d, want one round, below node 0's counter %d", lb.Token(), y)
	}
	before := make([]uint64, len(servers))
	for i, s := range servers {
		before[i] = counterOn(t, s, fk)
	}
	// A's second round is the first request the proxies hold: once a
	// second reply (its undo's, or its own after a PING) comes back, it
	// has run.
	for i, p := range proxies[:2] {
		if !pollUntil(late+2*time.Second, func() bool { return p.StatsFor("A").Replies >= repliesBefore[i]+2 }) {
			t.Fatalf("node %d: A's late second round never came back", i)
		}
	}
	for i, s := range servers[:2] {
		if n := noscript(s); n != noscripts[i] {
			t.Fatalf("node %d answered NOSCRIPT %d times to A's late requests: its second round never ran", i, n-noscripts[i])
		}
	}
	for i, s := range servers {
		if c := counterOn(t, s, fk); c != before[i] {
			violations = append(violations, fmt.Sprintf("node %d: counter went from %d to %d after B took the key: A's late second round (token %d) was not refused", i, before[i], c, y+1))
		}
	}
	tokens = append(tokens, lb.Token())
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := proxies[0].SetFor("B", redistest.Pass()); err != nil {
		t.Fatal(err)
	}

	next, err := mb.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release(ctx)
	for _, tk := range tokens {
		if next.Token() <= tk {
			violations = append(violations, fmt.Sprintf("next holder's token %d is not above the earlier token %d", next.Token(), tk))
		}
	}
	return violations
}

// f6Client is one client of F6, with the clock its proposals come from.
type f6Client struct {
	name string
	m    *lock.Mutex
	last atomic.Int64 // its last proposal, in µs
}

// checkF6 is F6. Clients whose proposal clocks are synchronised, an hour
// behind, an hour ahead, or equal to the previous token to the
// microsecond, acquire one key in a seeded interleaving. Tokens strictly
// increase, and the second round is taken exactly when fewer than a
// majority of nodes could store the proposal, which the counters read
// before each attempt tell: a token is the proposal after one round, and
// above it after two. Then, with synchronised clocks and no faults, every
// attempt costs exactly one request per node. It catches M8.
func checkF6(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	const (
		nodes  = 3
		quorum = 2
		seed   = 6
		rounds = 24
	)
	servers, _ := startNodes(t, nodes)
	proxies := make([]*redistest.Proxy, nodes)
	addrs := make([]string, nodes)
	for i, s := range servers {
		proxies[i] = redistest.StartProxy(t, s.Addr())
		addrs[i] = proxies[i].Addr()
	}
	// scripts returns how many scripts each node was sent.
	scripts := func() []int64 {
		n := make([]int64, nodes)
		for i, p := range proxies {
			st := p.Stats()
			n[i] = st.Commands["EVALSHA"] + st.Commands["EVAL"]
		}
		return n
	}
	// landed reports whether each node was sent at least more[i] scripts
	// since before, and answered every request it was sent.
	landed := func(before []int64, more int64) bool {
		for i, p := range proxies {
			st := p.Stats()
			if st.Commands["EVALSHA"]+st.Commands["EVAL"] < before[i]+more || st.Replies < st.Requests {
				return false
			}
		}
		return true
	}
	ctx := context.Background()
	const key = "{f6}"
	fk := rueidislock.FenceKey(key)
	var lastToken atomic.Uint64

	offsets := map[string]time.Duration{"synchronised": 0, "behind": -time.Hour, "ahead": time.Hour}
	var clients []*f6Client
	for _, name := range []string{"synchronised", "behind", "ahead", "equal"} {
		c := &f6Client{name: name}
		b := dialFor(t, addrs, mutate)
		rueidislock.SetProposalClock(b, func() time.Time {
			now := time.Now().Add(offsets[name])
			if name == "equal" {
				now = time.UnixMicro(int64(lastToken.Load()))
			}
			c.last.Store(now.UnixMicro())
			return now
		})
		c.m = lock.New(b, lock.WithTTL(time.Second), lock.WithAutoExtend(false))
		defer c.m.Close()
		clients = append(clients, c)
	}

	// A first holder, so that "equal" has a token to be equal to.
	first, err := clients[0].m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	lastToken.Store(first.Token())
	before := scripts()
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !pollUntil(5*time.Second, func() bool { return landed(before, 2) }) {
		t.Fatalf("first holder: scripts sent %v, before %v: not all landed", scripts(), before)
	}
	rng := rand.New(rand.NewPCG(seed, 6))
	t.Logf("F6 interleaving seed %d", seed)
	var order []int
	for range rounds / len(clients) {
		order = append(order, 0, 1, 2, 3)
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	fallbacks := 0
	for round, ci := range order {
		c := clients[ci]
		counters := make([]uint64, nodes)
		for i, s := range servers {
			counters[i] = counterOn(t, s, fk)
		}
		before = scripts()
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err := c.m.Acquire(actx, key)
		cancel()
		if err != nil {
			violations = append(violations, fmt.Sprintf("round %d (%s): Acquire of the free key: %v", round, c.name, err))
			continue
		}
		p := uint64(c.last.Load())
		storable := 0
		for _, cnt := range counters {
			if p > cnt {
				storable++
			}
		}
		// A second round's token is above a counter at least p.
		fellBack := l.Token() != p
		if fellBack {
			fallbacks++
		}
		what := fmt.Sprintf("round %d (%s, proposal %d, counters %v): token %d", round, c.name, p, counters, l.Token())
		switch {
		case l.Token() <= lastToken.Load():
			violations = append(violations, fmt.Sprintf("%s, not above the previous token %d", what, lastToken.Load()))
		case storable < quorum && !fellBack:
			violations = append(violations, fmt.Sprintf("%s: no second round, although only %d nodes could store the proposal", what, storable))
		case storable == nodes && fellBack:
			violations = append(violations, fmt.Sprintf("%s: a second round, although every node stored the proposal", what))
		}
		lastToken.Store(max(lastToken.Load(), l.Token()))
		if err := l.Release(ctx); err != nil {
			t.Fatalf("%s: Release: %v", what, err)
		}
		// Release returns once the nodes that granted before the decision
		// released the key: the next round reads the counters once every
		// node has run this round's attempt and release. (A node whose
		// grant came after the release began also undoes it: that third
		// script changes no counter.)
		if !pollUntil(5*time.Second, func() bool { return landed(before, 2) }) {
			t.Fatalf("%s: scripts sent %v, before %v: not all landed", what, scripts(), before)
		}
	}
	t.Logf("%d rounds, %d with a second round", rounds, fallbacks)
	if fallbacks == 0 {
		violations = append(violations, fmt.Sprintf("no second round in %d rounds, although clocks an hour behind, or equal to the last token, always need one", rounds))
	}
	if fallbacks == rounds {
		t.Fatalf("a second round in each of %d rounds: the mix does not test the one-round path", rounds)
	}

	// Synchronised clocks, no faults: one request per node per attempt,
	// counted over attempts on fresh keys, none released meanwhile (a
	// release could make a node that answered last undo its own grant).
	const attempts = 10
	obs := new(nodeErrorObserver)
	sync := lock.New(dialFor(t, addrs, mutate), lock.WithTTL(time.Minute), lock.WithAutoExtend(false), lock.WithObserver(obs))
	defer sync.Close()
	before = scripts()
	var leases []*lock.Lease
	for i := range attempts {
		l, err := sync.Acquire(ctx, fmt.Sprintf("{f6}sync:%d", i))
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	pollUntil(5*time.Second, func() bool { return landed(before, attempts) })
	for i, n := range scripts() {
		switch got := n - before[i]; {
		case got > attempts:
			violations = append(violations, fmt.Sprintf("synchronised: node %d got %d scripts for %d attempts, want one each", i, got, attempts))
		case got < attempts:
			// A node call that starts after its node timeout (a loaded
			// host) is not sent: the attempt decided without it.
			obs.mu.Lock()
			t.Logf("synchronised: node %d got %d scripts for %d attempts: calls timed out before they were sent (node errors: %v)", i, got, attempts, obs.events)
			obs.mu.Unlock()
		}
	}
	for _, l := range leases {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return violations
}

// TestF3LateFenceRefused and TestF6ProposalClocks run F3 and F6 on the
// backend as shipped.
func TestF3LateFenceRefused(t *testing.T) { failOn(t, checkF3(t, nil)) }
func TestF6ProposalClocks(t *testing.T)   { failOn(t, checkF6(t, nil)) }

// TestLateGrantReleasedNotUndone checks that a node whose grant arrives
// after the lease was released, by a release that deleted the key there
// (it ran after the grant), is not sent an undo as well: over several
// nodes the lease is granted by the others first, and its release often
// reaches the last node before that node's grant is heard. The undo would
// be a script sent for nothing on every such cycle. With a frozen node
// among five, the late grant must still wait only for its own node's
// answer to the release, not for the frozen node's, which never comes.
func TestLateGrantReleasedNotUndone(t *testing.T) {
	for _, frozen := range []bool{false, true} {
		t.Run(fmt.Sprintf("frozen=%v", frozen), func(t *testing.T) {
			checkLateGrantReleased(t, frozen)
		})
	}
}

func checkLateGrantReleased(t *testing.T, frozen bool) {
	const key = "late:released"
	nodes := 3
	if frozen {
		nodes = 5
	}
	servers, addrs := startNodes(t, nodes)
	const slowNode = 2
	slow := redistest.StartProxy(t, addrs[slowNode])
	addrs[slowNode] = slow.Addr()
	var ice *redistest.Proxy
	if frozen {
		ice = redistest.StartProxy(t, addrs[nodes-1])
		addrs[nodes-1] = ice.Addr()
	}
	ctx := context.Background()
	// Load the scripts on every node, so that no NOSCRIPT fallback counts,
	// with a Backend whose Close waits for all its calls.
	warm := lock.New(dial(t, addrs))
	l, err := warm.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	warm.Close()
	b := dial(t, addrs, rueidislock.WithNodeTimeout(time.Second))
	m := lock.New(b)
	defer m.Close()
	if err := servers[slowNode].Do("CONFIG", "RESETSTAT").Error(); err != nil {
		t.Fatal(err)
	}
	// The slow node's replies come 200ms late (its node timeout is 1s):
	// the lease is granted by the others, and released on them before
	// the slow node's grant is heard. The frozen node never answers.
	if err := slow.Set(redistest.HoldReplies(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if frozen {
		if err := ice.Set(redistest.HoldReplies(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	l, err = m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Close waits for the node calls still under way: the slow node's
	// grant, and what it does about it, and the frozen node's timeouts.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := infoField(t, servers[slowNode], "commandstats", "cmdstat_evalsha", "calls"); n != 2 {
		t.Fatalf("the slow node ran %d scripts by EVALSHA, want 2: the attempt and the release", n)
	}
	if n := infoField(t, servers[slowNode], "commandstats", "cmdstat_eval", "calls"); n != 0 {
		t.Errorf("the slow node was sent %d undos (EVAL) after a release that deleted the key there", n)
	}
	if n := mustInt(servers[slowNode].Do("EXISTS", key)); n != 0 {
		t.Errorf("the key is left on the slow node")
	}
}
