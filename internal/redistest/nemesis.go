package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// A FaultKind is one kind of fault a [Nemesis] injects, named after the
// scenarios of RELIABILITY.md §7.
type FaultKind string

// The faults a [Nemesis] draws from. Each affects one or two nodes for a
// while and then heals them.
const (
	KillRestart FaultKind = "S1 kill+restart"  // SIGKILL, restart after TTL+100ms
	FreezeThaw  FaultKind = "S3 freeze"        // SIGSTOP for 0.5–2 TTL, then SIGCONT
	SlowLinks   FaultKind = "S5 latency"       // proxy latency 40±10 or 80±10 ms for 1–3 s
	LostReplies FaultKind = "S6 drop-replies"  // proxy drops replies for 0.5–1.5 TTL
	ConnResets  FaultKind = "S7 resets"        // proxy resets the connections 1–3 times
	ClientPause FaultKind = "S13 client-pause" // CLIENT PAUSE WRITE or ALL for 0.5–2 TTL
	DebugSleep  FaultKind = "S14 debug-sleep"  // DEBUG SLEEP 0.15–1 s
	OutOfMemory FaultKind = "S15 maxmemory"    // maxmemory 1 for 1–3 s, then 0
	FlushScript FaultKind = "S16 script-flush" // SCRIPT FLUSH every 0.5 s for 2 s
)

// AllFaults lists every FaultKind.
var AllFaults = []FaultKind{KillRestart, FreezeThaw, SlowLinks, LostReplies, ConnResets,
	ClientPause, DebugSleep, OutOfMemory, FlushScript}

// A Nemesis injects random faults into redis-server nodes and their
// proxies, one at a time, for soak tests (S20): after a random gap it
// draws a kind and one or two nodes, applies the fault, waits, and heals
// the nodes before the next draw, so that at most two nodes are affected
// at once and a quorum of three of five always remains.
type Nemesis struct {
	Servers []*Server
	// Proxies, if not nil, has one proxy per server, in front of it, which
	// the clients dial. Without it the proxy faults are not drawn.
	Proxies []*Proxy
	// TTL is the largest TTL of the leases: faults last about one, and a
	// killed node stays down TTL+100ms (the delayed restart of §2).
	TTL time.Duration
	// Kinds are the faults drawn from; nil means AllFaults.
	Kinds []FaultKind
	// MinGap and MaxGap bound the random time between faults.
	MinGap, MaxGap time.Duration
	// Rand draws the schedule; seed it and print the seed.
	Rand *rand.Rand
	// Logf, if not nil, is told each fault.
	Logf func(format string, args ...any)
}

// Run injects faults until ctx is done, and returns how many of each kind
// it injected. A fault under way when ctx ends is still healed. The error
// joins the failures to inject or heal a fault; Run goes on after them.
func (n *Nemesis) Run(ctx context.Context) (map[FaultKind]int, error) {
	kinds := n.Kinds
	if kinds == nil {
		kinds = AllFaults
	}
	if n.Proxies == nil {
		kinds = dropProxyFaults(kinds)
	}
	counts := make(map[FaultKind]int)
	var errs []error
	for {
		gap := n.MinGap + time.Duration(n.Rand.Int64N(int64(n.MaxGap-n.MinGap)+1))
		select {
		case <-ctx.Done():
			return counts, errors.Join(errs...)
		case <-time.After(gap):
		}
		kind := kinds[n.Rand.IntN(len(kinds))]
		nodes := n.Rand.Perm(len(n.Servers))[:1+n.Rand.IntN(2)]
		if n.Logf != nil {
			n.Logf("nemesis: %s on nodes %v", kind, nodes)
		}
		counts[kind]++
		if err := n.inject(kind, nodes); err != nil {
			errs = append(errs, fmt.Errorf("%s on nodes %v: %w", kind, nodes, err))
		}
	}
}

// dropProxyFaults returns kinds without the faults that need proxies.
func dropProxyFaults(kinds []FaultKind) []FaultKind {
	var out []FaultKind
	for _, k := range kinds {
		switch k {
		case SlowLinks, LostReplies, ConnResets:
		default:
			out = append(out, k)
		}
	}
	return out
}

// inject applies kind to nodes, waits, and heals them.
func (n *Nemesis) inject(kind FaultKind, nodes []int) error {
	var errs []error
	each := func(f func(i int) error) {
		for _, i := range nodes {
			if err := f(i); err != nil {
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
			}
		}
	}
	ttls := func(lo, hi float64) time.Duration {
		return time.Duration((lo + n.Rand.Float64()*(hi-lo)) * float64(n.TTL))
	}
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(n.Rand.Int64N(int64(hi-lo)+1))
	}
	setProxies := func(f Fault) { each(func(i int) error { return n.Proxies[i].Set(f) }) }

	switch kind {
	case KillRestart:
		each(func(i int) error { return n.Servers[i].Kill() })
		time.Sleep(n.TTL + 100*time.Millisecond)
		each(func(i int) error { return n.Servers[i].Restart() })
	case FreezeThaw:
		each(func(i int) error { return n.Servers[i].Freeze() })
		time.Sleep(ttls(0.5, 2))
		each(func(i int) error { return n.Servers[i].Thaw() })
	case SlowLinks:
		d := []time.Duration{40 * time.Millisecond, 80 * time.Millisecond}[n.Rand.IntN(2)]
		setProxies(Latency(d, 10*time.Millisecond))
		time.Sleep(between(time.Second, 3*time.Second))
		setProxies(Pass())
	case LostReplies:
		setProxies(DropReplies())
		time.Sleep(ttls(0.5, 1.5))
		setProxies(Pass())
	case ConnResets:
		for range 1 + n.Rand.IntN(3) {
			setProxies(ResetConns())
			setProxies(Pass())
			time.Sleep(between(100*time.Millisecond, 500*time.Millisecond))
		}
	case ClientPause:
		d := ttls(0.5, 2)
		mode := []string{"WRITE", "ALL"}[n.Rand.IntN(2)]
		each(func(i int) error {
			return n.Servers[i].Do("CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), mode).Error()
		})
		time.Sleep(d)
		each(func(i int) error { return n.Servers[i].Do("CLIENT", "UNPAUSE").Error() })
	case DebugSleep:
		d := between(150*time.Millisecond, time.Second)
		secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
		// DEBUG SLEEP blocks the node, its admin connection included: sleep
		// the nodes together.
		done := make(chan error, len(nodes))
		for _, i := range nodes {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Second)
				defer cancel()
				err := n.Servers[i].DoContext(ctx, "DEBUG", "SLEEP", secs).Error()
				if err != nil {
					err = fmt.Errorf("node %d: %w", i, err)
				}
				done <- err
			}()
		}
		for range nodes {
			errs = append(errs, <-done)
		}
	case OutOfMemory:
		each(func(i int) error { return n.Servers[i].SetMaxMemory(1) })
		time.Sleep(between(time.Second, 3*time.Second))
		each(func(i int) error { return n.Servers[i].SetMaxMemory(0) })
	case FlushScript:
		for range 4 {
			each(func(i int) error { return n.Servers[i].ScriptFlush() })
			time.Sleep(500 * time.Millisecond)
		}
	default:
		return fmt.Errorf("redistest: unknown fault kind %q", kind)
	}
	return errors.Join(errs...)
}
