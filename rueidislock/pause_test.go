package rueidislock_test

// Pauses, RELIABILITY.md §7: S11, a client process stopped inside its
// critical section (Kleppmann's GC pause), and its variant with the
// acquiring client's replies held back; S4, a majority of the nodes
// stopped while a lease renews.

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
)

// childWait bounds how long the parent waits for a child to start, answer
// or finish beyond its planned work: a re-executed test binary under -race
// dials five nodes.
const childWait = 30 * time.Second

// TestS11PausedHolder: a client process holding a key is stopped (SIGSTOP)
// for 2·TTL after Acquire returned and before its fenced write (longer if
// no other process has completed a critical section by then), while three
// other processes contend for the key. On resume, before anything else, its
// lease reports itself ended (Err not nil, Done closed); the write it then
// makes anyway is refused by the fenced store because the others acquired
// meanwhile with greater tokens (O3); and, its interval ending with its
// lease's context, no two holders overlapped (O1) and no increment of the
// shared counter was lost (O2).
func TestS11PausedHolder(t *testing.T) {
	_, addrs := startNodes(t, 5)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	begin := time.Now()
	const key = "s11:key"
	base := childConfig{Addrs: addrs, Keys: []string{key}, TTL: faultTTL, NodeTimeout: faultNodeTimeout, Seed: seed}

	pcfg := base
	pcfg.Name, pcfg.Pause = "paused", true
	pcfg.History = locktest.HistoryFile(t, "paused", seed)
	paused := startChild(t, pcfg)
	var token uint64
	if err := paused.next("holding", &token, childWait); err != nil {
		t.Fatal(err)
	}

	// The others start while the paused child holds the key, and wait for
	// it: only its pause can let them in.
	counter := filepath.Join(t.TempDir(), "counter")
	ocfg := base
	ocfg.Goroutines, ocfg.Duration, ocfg.Counter = 2, childWait, counter
	others := startChildren(t, 3, "other", ocfg)
	children := append([]*child{paused}, others...)

	t.Logf("children started in %v", time.Since(begin))
	if err := paused.stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Read on resume, the first thing after the pause.
	if _, err := paused.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	sections, err := sumCounters(counter, key)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2*faultTTL - time.Since(stopped))
	// On a loaded host the others may not have got in yet: the stale write
	// must come after one of theirs, so keep the child stopped until
	// another holder has completed a critical section.
	if !pollUntil(childWait, func() bool { n, err := sumCounters(counter, key); return err != nil || n > sections }) {
		t.Errorf("no other holder completed a critical section while the child was stopped for %v", time.Since(stopped))
	}
	if err := paused.cont(); err != nil {
		t.Fatal(err)
	}
	t.Logf("child stopped for %v holding token %d", time.Since(stopped), token)
	var seen resumeReport
	if err := paused.next("resumed", &seen, childWait); err != nil {
		t.Fatal(err)
	}
	if seen.Err == "" || !seen.Done {
		t.Errorf("on resume the lease reported Err() = %q, Done closed = %v; want ended, and done, before any other call", seen.Err, seen.Done)
	}
	t.Logf("on resume: Err() = %q", seen.Err)
	for _, c := range others {
		if err := c.finish(); err != nil {
			t.Error(err)
		}
	}
	finished := time.Now()
	sum := waitChildren(t, children, childWait)
	t.Logf("children exited %v after the end of their run", time.Since(finished))

	rec := mergeHistories(t, children)
	if err := rec.CheckOverlap(); err != nil {
		t.Errorf("O1: %v", err)
	}
	if err := rec.CheckTokens(); err != nil {
		t.Errorf("O3 tokens: %v", err)
	}
	var store locktest.FencedStore
	if err := rec.CheckFencing(&store); err != nil {
		t.Errorf("O3 fencing: %v", err)
	}
	accepted := rec.Replay(new(locktest.FencedStore))
	stale := -1
	for i, w := range rec.Writes {
		if w.Holder == "paused" {
			stale = i
		}
	}
	if stale < 0 {
		t.Fatal("the paused child's write is not in its history")
	}
	if accepted[stale] {
		t.Errorf("the paused child's write with token %d was accepted after its pause: fencing failed", token)
	}
	before := 0 // others' writes with greater tokens before the stale one
	for _, w := range rec.Writes[:stale] {
		if w.Holder != "paused" && w.Token > token {
			before++
		}
	}
	if before == 0 {
		t.Errorf("no other holder wrote during the pause: the scenario did not contend")
	}
	if got, err := sumCounters(counter, key); err != nil {
		t.Error(err)
	} else if got != int64(sum.Counted) {
		t.Errorf("O2: counter %d after %d counted critical sections: %d updates lost", got, sum.Counted, int64(sum.Counted)-got)
	}
	t.Logf("%d leases in %d intervals, %d writes (%d refused), %d during the pause; counter %d",
		sum.Acquired, len(rec.Intervals), len(rec.Writes), store.Rejected(), before, sum.Counted)
}

// TestS4MajorityFrozenWhileRenewing: SIGSTOP 3 of 5 nodes while a lease
// renews and a second client waits for its key. The lease ends by its
// deadline with ErrLeaseLost; after SIGCONT the second client acquires,
// never while the first held the key (O1), and no key is left past its TTL
// (O4).
func TestS4MajorityFrozenWhileRenewing(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	ma := lock.New(faultDial(t, addrs), lock.WithTTL(faultTTL))
	defer ma.Close()
	mb := lock.New(faultDial(t, addrs), lock.WithTTL(faultTTL))
	defer mb.Close()
	thawOnCleanup(t, servers...)
	ctx := context.Background()
	const key = "s4:key"
	var h locktest.History

	l, err := ma.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	sa := h.Acquired("a", l)
	first := leaseDeadline(l)
	if !pollUntil(faultTTL, func() bool { return leaseDeadline(l).After(first) }) {
		t.Fatalf("no renewal within a TTL: err %v", l.Err())
	}

	// The second client waits for the key all along.
	type result struct {
		acquired time.Time
		err      error
	}
	got := make(chan result, 1)
	go func() {
		bctx, cancel := context.WithTimeout(ctx, 10*faultTTL)
		defer cancel()
		lb, err := mb.Acquire(bctx, key)
		if err != nil {
			got <- result{err: err}
			return
		}
		at := time.Now()
		sb := h.Acquired("b", lb)
		time.Sleep(faultTTL / 10)
		sb.End()
		got <- result{acquired: at, err: lb.Release(ctx)}
	}()

	for _, s := range servers[:3] {
		if err := s.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	frozen := time.Now()
	at, deadline := leaseEnd(t, l, 2*faultTTL)
	t.Logf("lease ended %v after the freeze", at.Sub(frozen))
	checkOnTime(t, at, deadline)
	if err := l.Err(); !errors.Is(err, lock.ErrLeaseLost) {
		t.Errorf("Err() = %v, want %v", err, lock.ErrLeaseLost)
	}
	sa.End()

	// Frozen for 2·TTL, then thawed: the queued commands run.
	time.Sleep(2*faultTTL - time.Since(frozen))
	for _, s := range servers[:3] {
		if err := s.Thaw(); err != nil {
			t.Fatal(err)
		}
	}
	thawed := time.Now()
	r := <-got
	if r.err != nil {
		t.Fatalf("second client: %v", r.err)
	}
	t.Logf("second client acquired %v after the thaw", r.acquired.Sub(thawed))
	if err := l.Release(ctx); !errors.Is(err, lock.ErrLeaseLost) {
		t.Errorf("Release of the lost lease = %v, want %v", err, lock.ErrLeaseLost)
	}
	if err := h.CheckOverlap(); err != nil {
		t.Errorf("O1: %v", err)
	}
	if err := h.CheckTokens(); err != nil {
		t.Errorf("O3: %v", err)
	}
	if err := (redistest.Residue{Match: "s4:*", TTL: faultTTL}).Teardown(ctx, servers); err != nil {
		t.Errorf("O4: %v", err)
	}
}

// TestS11HeldReplies is S11's delayed-packet variant (Kleppmann's (b)):
// every reply to one client is held back for 2·TTL by the proxies, so its
// SET NX land on the nodes but it learns of them too late. Its Acquire
// fails (or at least returns no live lease), its attempts are undone, a
// second client acquires the key, and the late replies change nothing: no
// overlap (O1), no write of the first client accepted (O3), no key left
// behind (O4).
func TestS11HeldReplies(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	var aAddrs, bAddrs []string
	var proxies []*redistest.Proxy
	for _, addr := range addrs {
		p := redistest.StartProxy(t, addr)
		a, err := p.Listen("a")
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, p)
		aAddrs, bAddrs = append(aAddrs, a), append(bAddrs, p.Addr())
	}
	ma := lock.New(faultDial(t, aAddrs), lock.WithTTL(faultTTL))
	defer ma.Close()
	mb := lock.New(faultDial(t, bAddrs), lock.WithTTL(faultTTL))
	defer mb.Close()
	ctx := context.Background()
	if l, err := ma.Acquire(ctx, "s11h:warm"); err != nil { // connections and scripts
		t.Fatal(err)
	} else {
		l.Release(ctx)
	}
	awaitWarm(t, servers, "s11h:warm")
	const key = "s11h:key"
	var h locktest.History
	var store locktest.FencedStore

	for _, p := range proxies {
		if err := p.SetFor("a", redistest.HoldReplies(2*faultTTL)); err != nil {
			t.Fatal(err)
		}
	}
	actx, cancel := context.WithTimeout(ctx, faultTTL)
	la, err := ma.Acquire(actx, key)
	cancel()
	if err == nil {
		// Allowed only if the lease is already over: its holder must find
		// it ended before it acts.
		if la.Err() == nil {
			t.Errorf("Acquire returned a live lease although every reply came 2·TTL late")
		}
		sa := h.Acquired("a", la)
		if store.Write(key, "a", la.Token()) && la.Err() == nil {
			t.Errorf("first client's write with token %d accepted", la.Token())
		}
		sa.End()
		la.Release(ctx)
	} else if !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("Acquire with replies held = %v, want %v", err, lock.ErrNotAcquired)
	}
	t.Logf("Acquire with every reply held 2·TTL: %v", err)

	bctx, cancel := context.WithTimeout(ctx, 5*faultTTL)
	defer cancel()
	start := time.Now()
	lb, err := mb.Acquire(bctx, key)
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	t.Logf("second client acquired %v after the first gave up", time.Since(start))
	sb := h.Acquired("b", lb)
	if !store.Write(key, "b", lb.Token()) {
		t.Errorf("second client's write with token %d refused", lb.Token())
	}
	// The held replies now reach the first client, late.
	for _, p := range proxies {
		if err := p.SetFor("a", redistest.Pass()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(faultTTL / 10)
	if err := lb.Err(); err != nil {
		t.Errorf("second client's lease ended after the late replies: %v", err)
	}
	sb.End()
	if err := lb.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
	if err := h.CheckOverlap(); err != nil {
		t.Errorf("O1: %v", err)
	}
	if err := store.Check(); err != nil {
		t.Errorf("O3: %v", err)
	}
	if err := (redistest.Residue{Match: "s11h:*", TTL: faultTTL}).Teardown(ctx, servers); err != nil {
		t.Errorf("O4: %v", err)
	}
}
