package lock_test

// Negative controls of RELIABILITY.md §6 (H7) for the mutants that break
// this package (M1, M6, M9; the others break rueidislock and are caught in
// its tests). Each check runs one scenario against fake backends under
// synctest, so it is exact and takes no real time, and returns the
// violations it saw: none on the Mutex as shipped, at least one on the
// mutant it controls.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leaselock/lock"
)

// A coreCheck runs a scenario on Mutexes that mutate breaks (nil: none)
// and returns the violations it saw. It fails t only when the scenario
// itself cannot run.
type coreCheck func(t *testing.T, mutate func(*lock.Mutex)) []string

// newMutexFor returns lock.New(b, opts...), broken by mutate if it is set.
func newMutexFor(b lock.Backend, mutate func(*lock.Mutex), opts ...lock.Option) *lock.Mutex {
	m := lock.New(b, opts...)
	if mutate != nil {
		mutate(m)
	}
	return m
}

// slowGrant is an unpinned memory backend whose attempts take elapsed, as
// over a network, and report as their Start the time they were sent.
type slowGrant struct {
	unpinned
	elapsed time.Duration
}

func (b slowGrant) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	sent := time.Now()
	time.Sleep(b.elapsed)
	res, err := b.unpinned.Acquire(ctx, req)
	res.Start = sent
	return res, err
}

// checkValidity is the V-unit check of §2's worked example: TTL 1000 ms,
// drift factor 0.01, an attempt that takes 30 ms. The drift is 12 ms, the
// validity after the decision 958 ms, and the Deadline sent + 988 ms, when
// the lease's context must be done. It catches M1.
func checkValidity(t *testing.T, mutate func(*lock.Mutex)) (violations []string) {
	synctest.Test(t, func(t *testing.T) {
		const elapsed = 30 * time.Millisecond
		m := newMutexFor(slowGrant{unpinned{newMemory(t)}, elapsed}, mutate,
			lock.WithTTL(time.Second), lock.WithDriftFactor(0.01), lock.WithAutoExtend(false))
		defer m.Close()
		sent := time.Now()
		l, err := m.Acquire(t.Context(), "v-unit")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		decided := time.Now()
		if decided.Sub(sent) != elapsed {
			t.Fatalf("the attempt took %v, want %v", decided.Sub(sent), elapsed)
		}
		want := sent.Add(988 * time.Millisecond)
		if d, _ := l.Deadline(); !d.Equal(want) {
			violations = append(violations, fmt.Sprintf("Deadline() = sent + %v (validity %v after the decision), want sent + TTL - drift = 988ms (validity 958ms)",
				d.Sub(sent), d.Sub(decided)))
		}
		ctx := l.Context()
		time.Sleep(time.Until(want))
		synctest.Wait() // the deadline's timer, due now, has run
		if ctx.Err() == nil {
			violations = append(violations, "lease context still live at sent + TTL - drift (O5)")
		}
	})
	return violations
}

// hangingExtend is an unpinned memory backend whose Extend, once hang is
// set, answers only when its context ends or a minute has passed: a
// renewal stuck on slow nodes.
type hangingExtend struct {
	unpinned
	hang atomic.Bool
}

func (b *hangingExtend) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	if b.hang.Load() {
		select {
		case <-ctx.Done():
			return lock.Result{}, ctx.Err()
		case <-time.After(time.Minute):
		}
	}
	return b.unpinned.Extend(ctx, req)
}

// checkLateRenewal is O5 for a renewal that hangs: a renewal that has not
// answered by the lease's deadline extends nothing, so the lease's context
// is done at that deadline and Err reports the loss. It catches M6.
func checkLateRenewal(t *testing.T, mutate func(*lock.Mutex)) (violations []string) {
	synctest.Test(t, func(t *testing.T) {
		b := &hangingExtend{unpinned: unpinned{newMemory(t)}}
		m := newMutexFor(b, mutate, lock.WithTTL(time.Second))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "o5")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		b.hang.Store(true) // from the first renewal, at TTL/3
		deadline, _ := l.Deadline()
		ctx := l.Context()
		time.Sleep(time.Until(deadline))
		synctest.Wait()
		if ctx.Err() == nil {
			violations = append(violations, "lease context still live at its deadline while its renewal hangs (O5)")
		}
		if l.Err() == nil {
			violations = append(violations, "Err() = nil at the deadline while the renewal hangs (O5)")
		}
	})
	return violations
}

// watchedRelease is an unpinned memory backend that records, when it is
// asked to free a key, whether the lease's context was done then.
type watchedRelease struct {
	unpinned
	lease       atomic.Pointer[lock.Lease]
	doneAtFree  atomic.Bool
	freeCounted atomic.Int32
}

func (b *watchedRelease) Release(ctx context.Context, req lock.Request) error {
	if l := b.lease.Load(); l != nil {
		b.freeCounted.Add(1)
		b.doneAtFree.Store(l.Context().Err() != nil)
	}
	return b.unpinned.Release(ctx, req)
}

// checkReleaseOrder is the order O1 rests on: Release cancels the lease's
// context before it asks the backend to free the key, so that the work
// under the lease has been told to stop before anyone else can hold the
// key. It catches M9.
func checkReleaseOrder(t *testing.T, mutate func(*lock.Mutex)) (violations []string) {
	synctest.Test(t, func(t *testing.T) {
		b := &watchedRelease{unpinned: unpinned{newMemory(t)}}
		m := newMutexFor(b, mutate, lock.WithTTL(time.Second))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "o1")
		if err != nil {
			t.Fatal(err)
		}
		ctx := l.Context()
		b.lease.Store(l)
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := b.freeCounted.Load(); n != 1 {
			t.Fatalf("the backend was asked %d times to free the key, want once", n)
		}
		if !b.doneAtFree.Load() {
			violations = append(violations, "the key was freed while the lease's context was live (O1)")
		}
		if ctx.Err() == nil {
			violations = append(violations, "lease context live after Release")
		}
	})
	return violations
}

// coreControls pairs each mutant of this package with the check that must
// catch it.
var coreControls = []struct {
	mutant string
	check  coreCheck
}{
	{lock.M1NoValidityMath, checkValidity},
	{lock.M6LateRenewal, checkLateRenewal},
	{lock.M9ReleaseFirst, checkReleaseOrder},
}

// TestValidityFormula, TestLateRenewalEndsAtDeadline and
// TestReleaseCancelsBeforeFreeing run the checks on the Mutex as shipped.
func TestValidityFormula(t *testing.T)             { failOn(t, checkValidity(t, nil)) }
func TestLateRenewalEndsAtDeadline(t *testing.T)   { failOn(t, checkLateRenewal(t, nil)) }
func TestReleaseCancelsBeforeFreeing(t *testing.T) { failOn(t, checkReleaseOrder(t, nil)) }

func failOn(t *testing.T, violations []string) {
	t.Helper()
	for _, v := range violations {
		t.Error(v)
	}
}

// TestNegativeControls runs each check on the mutant it must catch, and
// fails if the check sees nothing wrong there.
func TestNegativeControls(t *testing.T) {
	for _, c := range coreControls {
		t.Run(c.mutant, func(t *testing.T) {
			violations := c.check(t, func(m *lock.Mutex) { lock.SetMutant(m, c.mutant) })
			if len(violations) == 0 {
				t.Fatalf("mutant %s not caught", c.mutant)
			}
			t.Logf("mutant %s caught: %q", c.mutant, violations)
		})
	}
}
