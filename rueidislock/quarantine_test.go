package rueidislock_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// The S8 schedule (RELIABILITY.md §7): A holds a key on nodes 0, 1 and 2
// of five; node 2 is killed and restarted without persistence, so it has
// forgotten A's key and its fencing counter; B then asks for the key, and
// finds nodes 2, 3 and 4 free: a majority.
const (
	s8TTL        = 1500 * time.Millisecond
	s8Quarantine = 2 * time.Second
	s8Key        = "s8:job"
)

// s8Mutex returns a Mutex over addrs whose leases do not renew, so that
// A's lease ends at its deadline.
func s8Mutex(t *testing.T, b *rueidislock.Backend, opts ...lock.Option) *lock.Mutex {
	m := lock.New(b, append([]lock.Option{lock.WithTTL(s8TTL), lock.WithAutoExtend(false)}, opts...)...)
	t.Cleanup(func() { m.Close() })
	return m
}

// s8Hold makes A hold s8Key on nodes 0, 1 and 2 only, then restarts node
// 2 without persistence. Nodes 3 and 4 refuse A: another holder's value
// sits there until A's winning attempt has run on them (the slow log shows
// its value), so that no late call of that attempt finds the key free and
// raises their counters to A's token; then it is deleted. (An expiry after
// a fixed time left that to the scheduler: one slow run let A take them.)
func s8Hold(t *testing.T, servers []*redistest.Server, a *lock.Mutex) *lock.Lease {
	t.Helper()
	for _, s := range servers[3:] {
		logEveryCommand(t, s)
		if err := s.Do("SET", s8Key, "someone-else", "PX", "60000").Error(); err != nil {
			t.Fatal(err)
		}
	}
	// Not a context with a timeout: it would bound the lease too.
	held, err := a.Acquire(context.Background(), s8Key, lock.WithRetry(20), lock.WithDelay(10*time.Millisecond))
	if err != nil {
		t.Fatalf("A: %v", err)
	}
	value, err := servers[0].Do("GET", s8Key).ToString()
	if err != nil {
		t.Fatalf("A's value on node 0: %v", err)
	}
	for i, s := range servers[3:] {
		if !pollUntil(10*time.Second, func() bool { return loggedArg(t, s, value) }) {
			t.Fatalf("A's attempt never ran on node %d", i+3)
		}
		if v, _ := s.Do("GET", s8Key).ToString(); v != "someone-else" {
			t.Fatalf("node %d holds %q, want the other holder's value", i+3, v)
		}
		if err := s.Do("DEL", s8Key).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := servers[2].Restart(); err != nil {
		t.Fatal(err)
	}
	if n, _ := servers[2].Do("DBSIZE").AsInt64(); n != 0 {
		t.Fatalf("node 2 kept %d keys across a restart without persistence", n)
	}
	return held
}

// loggedArg reports whether a command with the argument arg is in s's slow
// log.
func loggedArg(t *testing.T, s *redistest.Server, arg string) bool {
	t.Helper()
	return slices.ContainsFunc(slowLog(t, s), func(args []string) bool { return slices.Contains(args, arg) })
}

// logEveryCommand empties s's slow log and has it keep every command from
// now on, up to the 1024 that slowLog reads.
func logEveryCommand(t *testing.T, s *redistest.Server) {
	t.Helper()
	for _, cmd := range [][]string{
		{"CONFIG", "SET", "slowlog-log-slower-than", "0"},
		{"CONFIG", "SET", "slowlog-max-len", "1024"},
		{"SLOWLOG", "RESET"},
	} {
		if err := s.Do(cmd...).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// slowLog returns the commands in s's slow log, newest first, each as its
// command and arguments.
func slowLog(t *testing.T, s *redistest.Server) [][]string {
	t.Helper()
	entries, err := s.Do("SLOWLOG", "GET", "1024").ToArray()
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	for _, e := range entries {
		fields, err := e.ToArray()
		if err != nil || len(fields) < 4 {
			continue
		}
		if args, _ := fields[3].AsStrSlice(); len(args) > 0 {
			cmds = append(cmds, args)
		}
	}
	return cmds
}

// waitQuarantine waits until every node has served its quarantine and
// been marked repaired, making attempts so that the nodes get marked.
func waitQuarantine(t *testing.T, servers []*redistest.Server, m *lock.Mutex) {
	t.Helper()
	voting := func(s *redistest.Server) bool {
		birth, _ := s.Do("GET", "leaselock\x00birth").AsInt64()
		repaired, _ := s.Do("GET", "leaselock\x00repaired").AsInt64()
		now, _ := s.Do("TIME").AsIntSlice()
		return birth > 0 && repaired == birth && len(now) == 2 &&
			now[0]*1000+now[1]/1000-birth >= s8Quarantine.Milliseconds()
	}
	if !pollUntil(s8Quarantine+5*time.Second, func() bool {
		if l, err := m.TryAcquire(context.Background(), "s8:warm"); err == nil {
			l.Release(context.Background())
		}
		for _, s := range servers {
			if !voting(s) {
				return false
			}
		}
		return true
	}) {
		t.Fatal("new nodes still quarantined well after the quarantine")
	}
}

// TestS8Unprotected is the negative control: without persistence and
// without quarantine, B takes the key while A's lease is live. The oracle
// of exclusion (O1) must see it.
func TestS8Unprotected(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	// A's lease is long (no quarantine bounds it here), so that B, which
	// may need retries while its connection to node 2 is made again, gets
	// the key well before A's lease ends.
	long := lock.WithTTL(10 * time.Second)
	a, b := s8Mutex(t, faultDial(t, addrs), long), s8Mutex(t, faultDial(t, addrs), long)
	leaseA := s8Hold(t, servers, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leaseB, err := b.Acquire(ctx, s8Key, lock.WithDelay(10*time.Millisecond))
	if err != nil {
		t.Fatalf("B after node 2 forgot A's key: %v; the unprotected case should let B in", err)
	}
	defer leaseB.Release(context.Background())
	if leaseA.Err() != nil {
		t.Fatalf("A's lease ended (%v) before B acquired: the schedule did not overlap", leaseA.Err())
	}
	t.Logf("detected: A (token %d) and B (token %d) hold %q at once", leaseA.Token(), leaseB.Token(), s8Key)
}

// TestS8Quarantine: with WithQuarantine, the restarted node votes for no
// one until its quarantine is over, so B gets the key only after A's lease
// ended, and the node's counters were repaired before it voted again.
func TestS8Quarantine(t *testing.T) {
	servers, addrs := startNodes(t, 5)
	q := rueidislock.WithQuarantine(s8Quarantine)
	a, b := s8Mutex(t, faultDial(t, addrs, q)), s8Mutex(t, faultDial(t, addrs, q))
	waitQuarantine(t, servers, a)
	leaseA := s8Hold(t, servers, a)
	aEnded := make(chan time.Time, 1)
	go func() {
		<-leaseA.Done()
		aEnded <- time.Now()
	}()

	if l, err := b.TryAcquire(context.Background(), s8Key); !errors.Is(err, lock.ErrNotAcquired) {
		if l != nil {
			l.Release(context.Background())
		}
		t.Fatalf("B right after node 2 restarted = %v, want %v: the quarantined node voted", err, lock.ErrNotAcquired)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s8Quarantine+5*time.Second)
	defer cancel()
	leaseB, err := b.Acquire(ctx, s8Key)
	if err != nil {
		t.Fatalf("B never acquired after the quarantine: %v", err)
	}
	got := time.Now()
	defer leaseB.Release(context.Background())
	if ended := <-aEnded; ended.After(got) {
		t.Errorf("B acquired %v before A's lease ended (O1)", ended.Sub(got))
	}
	if leaseB.Token() <= leaseA.Token() {
		t.Errorf("B's token %d <= A's %d (O3)", leaseB.Token(), leaseA.Token())
	}
	birth, _ := servers[2].Do("GET", "leaselock\x00birth").ToString()
	repaired, _ := servers[2].Do("GET", "leaselock\x00repaired").ToString()
	if birth == "" || repaired != birth {
		t.Errorf("node 2: birth %q, repaired %q: want it repaired for its birth", birth, repaired)
	}
	fence, _ := servers[2].Do("GET", s8Key+"\x00fence{"+slotTagOf(t, servers[0], s8Key)+"}").AsUint64()
	if fence < leaseA.Token() {
		t.Errorf("node 2's counter %d after repair, below A's token %d", fence, leaseA.Token())
	}
}

// TestF2CounterRepair: a client whose clock is an hour behind proposes
// tokens below the last holder's, and gets the key on nodes 2, 3 and 4, of
// which only node 2 held the last token, before it restarted without
// persistence. Repaired, node 2 refuses the proposal and the token still
// goes up. Without the repair (the negative control), the token goes back,
// which the fenced store (O3) must see.
func TestF2CounterRepair(t *testing.T) {
	for _, repair := range []bool{true, false} {
		name := map[bool]string{true: "repaired", false: "not repaired (negative control)"}[repair]
		t.Run(name, func(t *testing.T) {
			servers, addrs := startNodes(t, 5)
			q := rueidislock.WithQuarantine(s8Quarantine)
			backendB := faultDial(t, addrs, q)
			if !repair {
				rueidislock.SkipRepair(backendB)
			}
			rueidislock.SetProposalClock(backendB, func() time.Time { return time.Now().Add(-time.Hour) })
			a, b := s8Mutex(t, faultDial(t, addrs, q)), s8Mutex(t, backendB)
			waitQuarantine(t, servers, a)
			leaseA := s8Hold(t, servers, a)
			tokenA := leaseA.Token()
			leaseA.Release(context.Background())
			a.Close() // so that only B's backend repairs node 2, or not
			// Nodes 0 and 1, which know A's token, refuse B (another
			// holder's value sits there), so B's majority is nodes 2, 3
			// and 4: only node 2 knew A's token, before its restart.
			for _, s := range servers[:2] {
				if err := s.Do("SET", s8Key, "someone-else", "PX", "60000").Error(); err != nil {
					t.Fatal(err)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), s8Quarantine+5*time.Second)
			defer cancel()
			leaseB, err := b.Acquire(ctx, s8Key)
			if err != nil {
				t.Fatalf("B: %v", err)
			}
			defer leaseB.Release(context.Background())
			t.Logf("A's token %d, B's %d", tokenA, leaseB.Token())
			regressed := leaseB.Token() <= tokenA
			if regressed == repair {
				for i, s := range servers {
					fence, _ := s.Do("GET", s8Key+"\x00fence{"+slotTagOf(t, servers[0], s8Key)+"}").ToString()
					held, _ := s.Do("GET", s8Key).ToString()
					t.Logf("node %d: counter %q, holder %q", i, fence, held)
				}
			}
			if repair && regressed {
				t.Errorf("B's token %d <= A's %d after the repair (O3)", leaseB.Token(), tokenA)
			}
			if !repair && !regressed {
				t.Errorf("without the repair B's token %d > A's %d: the negative control shows nothing", leaseB.Token(), tokenA)
			}
		})
	}
}

// TestQuarantineChecks: the configurations the quarantine refuses: a
// negative quarantine, and a TTL above it, in Acquire and in Extend.
func TestQuarantineChecks(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	if _, err := rueidislock.Dial(addrs, rueidislock.WithQuarantine(-time.Second)); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("WithQuarantine(-1s) = %v, want %v", err, lock.ErrInvalid)
	}
	m := lock.New(faultDial(t, addrs, rueidislock.WithQuarantine(s8Quarantine)), lock.WithTTL(time.Second))
	defer m.Close()
	ctx := context.Background()
	if _, err := m.TryAcquire(ctx, "k", lock.WithTTL(s8Quarantine+time.Second)); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("a TTL above the quarantine = %v, want %v", err, lock.ErrInvalid)
	}
	waitQuarantine(t, servers, m)
	l, err := m.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatalf("TryAcquire after the quarantine: %v", err)
	}
	defer l.Release(ctx)
	if err := l.Extend(ctx, s8Quarantine+time.Second); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("Extend above the quarantine = %v, want %v", err, lock.ErrInvalid)
	}
}

// slotTagOf returns the tag that the fencing counter of key carries, read
// from a node that holds it.
func slotTagOf(t *testing.T, s *redistest.Server, key string) string {
	t.Helper()
	keys, err := s.Do("KEYS", key+"\x00fence*").AsStrSlice()
	if err != nil || len(keys) != 1 {
		t.Fatalf("fencing counter of %q on node 0: %v %v", key, keys, err)
	}
	tag := keys[0][len(key+"\x00fence{") : len(keys[0])-1]
	return tag
}
