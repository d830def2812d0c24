package rueidislock_test

// S12 of RELIABILITY.md §7: the client's clock. The drift a lease gives up
// (1 % of the TTL plus 2 ms) covers a client clock that runs slow by up to
// 0.5 %; one slow by 3 % (30 ms per second of TTL, above the 12 ms drift
// of a 1 s TTL) believes it holds the key after the servers dropped it,
// and the overlap oracle must see the next holder come in (redlock-py PR
// #3, redlock-rb#50). A stepped wall clock moves no deadline.
//
// Emulation: the slow client is a Backend whose clock (rueidislock's seam,
// set by SetClock) runs at 1-ρ of package time. Its elapsed times read
// short, and so its deadline comes late: the Backend maps that deadline
// back to package time (TestClock.system), where package lock's lease
// timer runs, so the lease's context ends when a process on the slow clock
// would end it, (TTL-drift)/(1-ρ) after sending. Renewal would be timed
// by package lock on package time, unskewed, so the slow client's leases
// do not renew: each ends at the deadline of its acquisition, the case the
// drift must cover. The servers' clocks, and the other clients', are
// package time.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

const (
	// s12TTL is the TTL of S12's leases: RELIABILITY's 1 s, whose drift
	// of 12 ms covers a rate error of 0.5 % with 7 ms to spare.
	s12TTL = time.Second
	// s12Rounds is how many leases the slow client takes per key, each
	// held to its deadline.
	s12Rounds = 2
	// s12Seed seeds the contenders' hold times: S12 is deterministic.
	s12Seed = 12
)

// TestS12ClientClockRate: per key (2 keys), a client whose clock runs slow
// by ρ holds each lease it gets until the lease ends by itself, while three
// clients with a true clock contend for the key and come in as soon as the
// servers let them, when the slow client's keys expire there: 8 goroutines
// on 3 nodes. With ρ = 0.5 % no two holders overlap (O1 = 0); with ρ = 3 %,
// the negative control, O1 finds the slow holder still holding when the
// next one came in.
func TestS12ClientClockRate(t *testing.T) {
	_, addrs := startNodes(t, 3)
	for _, c := range []struct {
		name    string
		rho     float64
		overlap bool
	}{
		{"rho=0.5%", 0.005, false},
		{"NC/rho=3%", 0.03, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, gaps := s12Contend(t, addrs, c.rho, "s12:"+c.name)
			err := h.CheckOverlap()
			t.Logf("ρ = %v: %d intervals; the next holder came in %v after each slow lease's end (negative: overlap)", c.rho, h.Len(), gaps)
			if !c.overlap {
				if err != nil {
					t.Errorf("O1 with a client clock slow by %v: %v", c.rho, err)
				}
				// The schedule must have put the next holder right behind
				// the slow one, or the pass above says nothing.
				if !slices.ContainsFunc(gaps, func(g time.Duration) bool { return g < 50*time.Millisecond }) {
					t.Errorf("no holder came in within 50 ms of a slow lease's end (%v): the expiry race was not run", gaps)
				}
				return
			}
			if err == nil {
				t.Fatalf("NC: O1 found no overlap with a client clock slow by %v; gaps %v", c.rho, gaps)
			}
			if !strings.Contains(err.Error(), "slow") {
				t.Errorf("NC: O1 found an overlap without the slow client: %v", err)
			}
			t.Logf("NC: detected: %v", err)
		})
	}
}

// s12Contend runs S12's schedule with a slow client at rate 1-rho and
// returns its history, and for each lease of the slow client the time from
// its end to the start of the next holder's interval.
func s12Contend(t *testing.T, addrs []string, rho float64, prefix string) (*locktest.History, []time.Duration) {
	slowB := faultDial(t, addrs)
	rueidislock.SetClock(slowB, 1-rho)
	slow := lock.New(slowB, lock.WithTTL(s12TTL), lock.WithAutoExtend(false))
	defer slow.Close()
	// The contenders try every 10 to 15 ms, and at the holder's expiry
	// as the nodes report it: one comes in within the 3 % control's
	// window (about 17 ms) even when an attempt lands just before the
	// expiry and is told no time to wait.
	norm := lock.New(faultDial(t, addrs), lock.WithTTL(s12TTL), lock.WithAutoExtend(false),
		lock.WithDelay(10*time.Millisecond), lock.WithJitter(5*time.Millisecond))
	defer norm.Close()
	bg := context.Background()
	for _, m := range []*lock.Mutex{slow, norm} { // connections and scripts
		l, err := m.Acquire(bg, prefix+":warm")
		if err != nil {
			t.Fatal(err)
		}
		l.Release(bg)
	}
	t.Logf("seed %d", s12Seed)

	var h locktest.History
	drift := time.Duration(float64(s12TTL)*lock.DefaultDriftFactor) + 2*time.Millisecond
	want := time.Duration(float64(s12TTL-drift) / (1 - rho))
	var wg sync.WaitGroup
	for k := range 2 {
		key := fmt.Sprintf("%s:%d", prefix, k)
		stop, cancel := context.WithCancel(bg)
		// taken tells the slow client that another holder got the key.
		taken := make(chan struct{}, 1)
		wg.Go(func() { // the slow client: its leases end by themselves
			defer cancel()
			for range s12Rounds {
				l, err := slow.Acquire(bg, key)
				if err != nil {
					t.Errorf("slow client: Acquire(%q): %v", key, err)
					return
				}
				returned := time.Now()
				h.Acquired("slow", l)
				select {
				case <-taken: // from before this lease
				default:
				}
				// The emulation in effect: the lease believes it holds for
				// (TTL-drift)/(1-ρ) from its sending, before which it
				// returned.
				if d := leaseDeadline(l).Sub(returned); d > want || d < want-50*time.Millisecond {
					t.Errorf("slow client: deadline %v after Acquire returned, want just under %v", d, want)
				}
				<-l.Done()
				// Release, which deletes the key and wakes a contender,
				// only once one took the key: the contenders come in when
				// the servers expire the slow client's keys, as they would
				// behind a holder that went away.
				select {
				case <-taken:
				case <-time.After(3 * s12TTL):
					t.Errorf("slow client: nobody took %q within %v of the lease's end", key, 3*s12TTL)
				}
				if err := l.Release(bg); !errors.Is(err, lock.ErrExpired) {
					t.Errorf("slow client: Release after the deadline = %v, want %v", err, lock.ErrExpired)
				}
			}
		})
		for g := range 3 {
			rng := rand.New(rand.NewPCG(s12Seed, uint64(k*3+g)))
			wg.Go(func() { // a contender with a true clock, until the slow client is done
				holder := fmt.Sprintf("true%d", g)
				for {
					l, err := norm.Acquire(stop, key)
					if err != nil {
						if stop.Err() == nil {
							t.Errorf("%s: Acquire(%q): %v", holder, key, err)
						}
						return
					}
					sp := h.Acquired(holder, l)
					select {
					case taken <- struct{}{}:
					default:
					}
					time.Sleep(time.Duration(1+rng.IntN(5)) * time.Millisecond) // the critical section
					sp.End()
					if err := l.Release(bg); err != nil {
						t.Errorf("%s: Release: %v", holder, err)
					}
				}
			})
		}
	}
	wg.Wait()
	return &h, s12Gaps(h.Intervals())
}

// s12Gaps returns, for each interval of the slow client, the time from its
// end to the start of the next interval of the same key.
func s12Gaps(ivs []locktest.Interval) []time.Duration {
	slices.SortFunc(ivs, func(a, b locktest.Interval) int { return a.Start.Compare(b.Start) })
	var gaps []time.Duration
	for i, iv := range ivs {
		if iv.Holder != "slow" {
			continue
		}
		for _, next := range ivs[i+1:] {
			if next.Key == iv.Key {
				gaps = append(gaps, next.Start.Sub(iv.End).Round(100*time.Microsecond))
				break
			}
		}
	}
	return gaps
}

// TestS12WallClockSteps: the wall clock of the client jumps 10 minutes
// forward, then back 20, between acquisitions. Deadline() stays sending
// time + TTL - drift on the monotonic clock, and tokens still strictly
// increase: the wall reading only makes proposals, which then are ahead
// of every counter, or behind (the second round of fencing).
func TestS12WallClockSteps(t *testing.T) {
	_, addrs := startNodes(t, 3)
	b := faultDial(t, addrs)
	clk := rueidislock.SetClock(b, 1)
	const ttl = time.Second
	m := lock.New(b, lock.WithTTL(ttl), lock.WithAutoExtend(false))
	defer m.Close()
	ctx := context.Background()
	drift := time.Duration(float64(ttl)*lock.DefaultDriftFactor) + 2*time.Millisecond

	var last uint64
	for _, step := range []time.Duration{0, 10 * time.Minute, -20 * time.Minute, 0, 10 * time.Minute} {
		clk.StepWall(step)
		// Bounded: a grant whose deadline is already past is given back and
		// tried again, for ever without a bound.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		before := time.Now()
		l, err := m.Acquire(actx, "s12:wall")
		after := time.Now()
		cancel()
		if err != nil {
			t.Fatalf("Acquire after a wall step of %v: %v", step, err)
		}
		d := leaseDeadline(l)
		t.Logf("wall step %v: deadline %v after Acquire began (TTL - drift = %v), token %d", step, d.Sub(before), ttl-drift, l.Token())
		if d.Before(before.Add(ttl-drift)) || d.After(after.Add(ttl-drift)) {
			t.Errorf("wall step %v: deadline %v after Acquire began, want TTL - drift = %v (within the call's %v)", step, d.Sub(before), ttl-drift, after.Sub(before))
		}
		if l.Token() <= last {
			t.Errorf("wall step %v: token %d after %d", step, l.Token(), last)
		}
		last = l.Token()
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
}
