package rueidislock

import (
	"crypto/sha1"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// AcquireSHA is the SHA-1 of acquireScript: a node that answers SCRIPT
// EXISTS for it runs an attempt's EVALSHA without a NOSCRIPT round trip.
var AcquireSHA = func() string {
	sum := sha1.Sum([]byte(acquireLua))
	return hex.EncodeToString(sum[:])
}()

// ReleaseTimeouts is releaseTimeouts, for the tests' bounds.
const ReleaseTimeouts = releaseTimeouts

// SetProposalClock makes b propose fencing tokens from clock, as a client
// whose clock is off would.
func SetProposalClock(b *Backend, clock func() time.Time) { b.proposalClock = clock }

// SkipRepair makes b's quarantine end without repairing the counters: the
// negative control of the repair.
func SkipRepair(b *Backend) { b.quarantine.noRepair = true }

// FenceKey is fenceKey: the name of key's fencing counter.
func FenceKey(key string) string { return fenceKey(key) }

// SetAfterRoundOne makes b run hook when an Acquire has decided to take
// the second round of fencing, before it sends it (F3).
func SetAfterRoundOne(b *Backend, hook func()) { b.knobs.afterRoundOne = hook }

// SetRandom makes b read its lock values from r, which may fail.
func SetRandom(b *Backend, r io.Reader) {
	b.knobs.random = func(p []byte) error { _, err := io.ReadFull(r, p); return err }
}

// The negative controls of RELIABILITY.md §6 (H7) that break this package;
// see knobs for what each does.
const (
	M2ReleaseAnyValue = "M2" // Release deletes the key without checking its value
	M3HalfQuorum      = "M3" // a quorum of N/2
	M4NoUndo          = "M4" // no cleanup after a failed Acquire
	M5UnguardedFence  = "M5" // round two without the ownership guard
	M7WeakValues      = "M7" // lock values from math/rand
	M8IgnoreStored    = "M8" // token = proposal whenever a majority granted
)

// SetMutant breaks b as mutant, one of the constants above, says.
func SetMutant(b *Backend, mutant string) {
	switch mutant {
	case M2ReleaseAnyValue:
		b.knobs.release = releaseAnyScript
	case M3HalfQuorum:
		b.quorum = len(b.nodes) / 2
	case M4NoUndo:
		b.knobs.noUndo = true
	case M5UnguardedFence:
		b.knobs.fence = unguardedFenceScript
	case M7WeakValues:
		weak := rand.New(rand.NewPCG(7, 7)) // a fixed seed, as math/rand users often have
		var mu sync.Mutex
		b.knobs.values = func(p []byte) error {
			mu.Lock()
			defer mu.Unlock()
			for i := range p {
				p[i] = byte(weak.Uint32())
			}
			return nil
		}
	case M8IgnoreStored:
		b.knobs.ignoreStored = true
	default:
		panic("rueidislock: no mutant " + mutant)
	}
}

// releaseAnyScript is M2's release: a DEL without the value check, as in
// rfyiamcool/go_redis_lock#1, announced as releaseScript does.
var releaseAnyScript = rueidis.NewLuaScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
`)

// unguardedFenceScript is M5's second round: fenceScript without its
// ownership check.
var unguardedFenceScript = rueidis.NewLuaScript(`
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
	redis.call('SET', KEYS[2], ARGV[2])
end
return 1
`)

// A TestClock is a Backend clock for S12, set with SetClock. Its monotonic
// reading runs at a rate against package time's, from the instant it was
// set, at which both read the same; its wall reading is package time's
// plus the steps given to StepWall.
//
// It emulates a client process whose clock runs slow (rate < 1) or fast
// (rate > 1). Such a client's timers fire when its clock reaches them:
// the Backend maps its deadlines through system to package time, where
// the node calls' contexts and package lock's lease timer run, so the
// lease ends when the emulated client would end it. Extensions are timed
// by package lock on package time, unskewed: tests of rate use leases
// that do not renew.
type TestClock struct {
	origin time.Time
	rate   float64

	mu   sync.Mutex
	step time.Duration
}

// SetClock makes b measure validity on a TestClock running at rate, and
// returns it. Set it before b is used.
func SetClock(b *Backend, rate float64) *TestClock {
	c := &TestClock{origin: time.Now(), rate: rate}
	b.clock = c
	return c
}

// StepWall moves c's wall reading by d, as an operator or NTP setting the
// system time would; the monotonic reading does not move.
func (c *TestClock) StepWall(d time.Duration) {
	c.mu.Lock()
	c.step += d
	c.mu.Unlock()
}

func (c *TestClock) now() time.Time {
	return c.origin.Add(time.Duration(float64(time.Since(c.origin)) * c.rate))
}

// wall has no monotonic reading, as a time read from a stepped wall clock
// would not: code that measured validity on it would see the step.
func (c *TestClock) wall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.step).Round(0)
}

func (c *TestClock) system(t time.Time) time.Time {
	return c.origin.Add(time.Duration(float64(t.Sub(c.origin)) / c.rate))
}
