package rueidislock_test

// Negative controls of RELIABILITY.md §6 (H7) for the mutants that break
// this package: M2-M5, M7 and M8 (M1, M6 and M9 break package lock and are
// caught by its tests). Each check runs one scenario on real redis-server
// nodes and returns the violations it saw, so that the same code runs on
// the backend as shipped, where it must see none, and on the mutant it
// controls, where it must see at least one.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// A check runs a scenario on Backends that mutate breaks (nil: none) and
// returns the violations it saw. It fails t only when the scenario itself
// cannot run.
type check func(t *testing.T, mutate func(*rueidislock.Backend)) []string

// dialFor returns a Backend over addrs, as dial does, broken by mutate if
// it is set.
func dialFor(t *testing.T, addrs []string, mutate func(*rueidislock.Backend), opts ...rueidislock.Option) *rueidislock.Backend {
	t.Helper()
	b := dial(t, addrs, opts...)
	if mutate != nil {
		mutate(b)
	}
	return b
}

// checkNodeTimeout is the node timeout of checks that expect every node to
// answer: generous, since a check must not fail because a loaded host
// (2 CPUs, -race, other packages' tests) answered late.
const checkNodeTimeout = time.Second

// connectAndLoad makes m's backend connect to its nodes and load its
// scripts there, which the first calls to a node do.
func connectAndLoad(t *testing.T, m *lock.Mutex) {
	t.Helper()
	l, err := acquireAfterRestart(m, "warm")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// failOn fails t with each violation.
func failOn(t *testing.T, violations []string) {
	t.Helper()
	for _, v := range violations {
		t.Error(v)
	}
}

// holders returns the value each server holds at key ("" where none),
// once every server holds one, or fails t after d.
func holders(t *testing.T, servers []*redistest.Server, key string, d time.Duration) []string {
	t.Helper()
	values := make([]string, len(servers))
	if !pollUntil(d, func() bool {
		for i, s := range servers {
			values[i], _ = s.Do("GET", key).ToString()
			if values[i] == "" {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("%q not on every node after %v: %q", key, d, values)
	}
	return values
}

// checkReleaseAfterHandOff is the B-tok row of §8: A's key expires on
// every node while A's lease is still valid here (a server clock jumped,
// emulated with ForceExpire), and B takes it. A's Release then reports
// ErrNotHeld and leaves B's key on every node. It catches M2.
func checkReleaseAfterHandOff(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	servers, addrs := startNodes(t, 3)
	m := lock.New(dialFor(t, addrs, mutate, rueidislock.WithNodeTimeout(checkNodeTimeout)), lock.WithTTL(10*time.Second), lock.WithAutoExtend(false))
	defer m.Close()
	ctx := context.Background()
	const key = "btok"

	a, err := m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	holders(t, servers, key, time.Second)
	for _, s := range servers {
		if err := s.ForceExpire(key); err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("B's Acquire once A's key expired everywhere: %v", err)
	}
	defer b.Release(ctx)
	values := holders(t, servers, key, time.Second)

	if err := a.Release(ctx); !errors.Is(err, lock.ErrNotHeld) {
		violations = append(violations, fmt.Sprintf("A's Release after the key passed to B = %v, want %v", err, lock.ErrNotHeld))
	}
	for i, s := range servers {
		if v, _ := s.Do("GET", key).ToString(); v != values[i] {
			violations = append(violations, fmt.Sprintf("node %d: B's key is %q after A's Release, want B's value intact", i, v))
		}
	}
	return violations
}

// checkQuorumMasks is QM: for every subset of 5 nodes on which another
// owner holds the key, TryAcquire succeeds exactly when the free nodes are
// a majority, changes nothing of the other owner's, and leaves nothing
// behind on the free nodes. It catches M3.
func checkQuorumMasks(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	servers, addrs := startNodes(t, 5)
	m := lock.New(dialFor(t, addrs, mutate, rueidislock.WithNodeTimeout(checkNodeTimeout)))
	defer m.Close()
	ctx := context.Background()
	connectAndLoad(t, m)
	for mask := range 1 << 5 {
		key := fmt.Sprintf("qm:%02d", mask)
		held := 0
		for i, s := range servers {
			if mask&(1<<i) != 0 {
				held++
				if err := s.Do("SET", key, "foreign", "PX", "60000").Error(); err != nil {
					t.Fatal(err)
				}
			}
		}
		l, err := m.TryAcquire(ctx, key)
		if want := 5-held >= 3; (err == nil) != want {
			violations = append(violations, fmt.Sprintf("mask %05b (%d of 5 held elsewhere): TryAcquire err = %v, want success %v", mask, held, err, want))
		}
		if err == nil {
			l.Release(ctx)
		}
		for i, s := range servers {
			if mask&(1<<i) != 0 {
				if v, _ := s.Do("GET", key).ToString(); v != "foreign" {
					violations = append(violations, fmt.Sprintf("mask %05b: node %d's foreign key changed to %q", mask, i, v))
				}
				continue
			}
			// A node that granted after the decision frees its key
			// itself, within the node timeout.
			if !gone(s, key, time.Second) {
				violations = append(violations, fmt.Sprintf("mask %05b: node %d keeps the key after the attempt", mask, i))
			}
		}
	}
	return violations
}

// checkFailedAttemptUndone is the residue check of S6 and S18 (O4) for an
// attempt that fails: another owner holds the key on two nodes of three,
// so the third node's grant is no lease, and the attempt must take it
// back. 100 ms after TryAcquire returns, that node holds no key, although
// its TTL is a minute, and the other owner's keys are intact. Each node
// takes the granting part in turn. It catches M4.
func checkFailedAttemptUndone(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	servers, addrs := startNodes(t, 3)
	m := lock.New(dialFor(t, addrs, mutate, rueidislock.WithNodeTimeout(checkNodeTimeout)), lock.WithTTL(time.Minute))
	defer m.Close()
	ctx := context.Background()
	connectAndLoad(t, m)
	for granter := range servers {
		key := fmt.Sprintf("o4:%d", granter)
		for i, s := range servers {
			if i != granter {
				if err := s.Do("SET", key, "foreign", "PX", "60000").Error(); err != nil {
					t.Fatal(err)
				}
			}
		}
		l, err := m.TryAcquire(ctx, key)
		returned := time.Now()
		if err == nil {
			l.Release(ctx)
			t.Fatalf("TryAcquire of %q succeeded with 2 of 3 nodes held by another owner", key)
		}
		if !gone(servers[granter], key, time.Until(returned.Add(100*time.Millisecond))) {
			pttl, _ := servers[granter].Do("PTTL", key).AsInt64()
			violations = append(violations, fmt.Sprintf("node %d holds %q (PTTL %d ms) 100 ms after the failed TryAcquire returned (O4)", granter, key, pttl))
		}
		for i, s := range servers {
			if v, _ := s.Do("GET", key).ToString(); i != granter && v != "foreign" {
				violations = append(violations, fmt.Sprintf("node %d: the other owner's key %q became %q", i, key, v))
			}
		}
	}
	return violations
}

// errNoEntropy is the error of failingReader.
var errNoEntropy = errors.New("no entropy")

// failingReader is a random source that always fails.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errNoEntropy }

// checkFailingRandom is §9's failing-reader test: when the random source
// of lock values fails, Acquire fails with its error and sets nothing; it
// never falls back to a weaker source. It catches M7.
func checkFailingRandom(t *testing.T, mutate func(*rueidislock.Backend)) (violations []string) {
	servers, addrs := startNodes(t, 1)
	b := dialFor(t, addrs, nil)
	rueidislock.SetRandom(b, failingReader{})
	if mutate != nil {
		mutate(b)
	}
	m := lock.New(b)
	defer m.Close()
	ctx := context.Background()
	l, err := m.TryAcquire(ctx, "random")
	if err == nil {
		l.Release(ctx)
		return append(violations, "TryAcquire succeeded although the random source failed: its lock value came from elsewhere")
	}
	if !errors.Is(err, lock.ErrNotAcquired) || !errors.Is(err, errNoEntropy) {
		violations = append(violations, fmt.Sprintf("TryAcquire = %v, want %v joined with the source's error", err, lock.ErrNotAcquired))
	}
	if n, _ := servers[0].Do("EXISTS", "random").AsInt64(); n != 0 {
		violations = append(violations, "the failed TryAcquire set the key")
	}
	return violations
}

// These tests run the checks on the backend as shipped.
func TestReleaseAfterHandOff(t *testing.T) { failOn(t, checkReleaseAfterHandOff(t, nil)) }
func TestFailedAttemptUndone(t *testing.T) { failOn(t, checkFailedAttemptUndone(t, nil)) }
func TestFailingRandomSource(t *testing.T) { failOn(t, checkFailingRandom(t, nil)) }
func TestQuorumMasks(t *testing.T)         { failOn(t, checkQuorumMasks(t, nil)) }

// controls pairs each mutant of this package with the check that must
// catch it. The checks' runs on the backend as shipped are the tests above,
// TestF3LateFenceRefused and TestF6ProposalClocks.
var controls = []struct {
	mutant string
	check  check
}{
	{rueidislock.M2ReleaseAnyValue, checkReleaseAfterHandOff},
	{rueidislock.M3HalfQuorum, checkQuorumMasks},
	{rueidislock.M4NoUndo, checkFailedAttemptUndone},
	{rueidislock.M5UnguardedFence, checkF3},
	{rueidislock.M7WeakValues, checkFailingRandom},
	{rueidislock.M8IgnoreStored, checkF6},
}

// TestNegativeControls runs each check on the mutant it must catch, and
// fails if the check sees nothing wrong there. The checks' fixed schedules
// and seeds make each catch certain, not likely.
func TestNegativeControls(t *testing.T) {
	for _, c := range controls {
		t.Run(c.mutant, func(t *testing.T) {
			violations := c.check(t, func(b *rueidislock.Backend) { rueidislock.SetMutant(b, c.mutant) })
			if len(violations) == 0 {
				t.Fatalf("mutant %s not caught", c.mutant)
			}
			t.Logf("mutant %s caught by %d violations, first: %s", c.mutant, len(violations), violations[0])
		})
	}
}
