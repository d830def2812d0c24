package benchmarks

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// The floor is what the shapes cost with no lock library at all: the
// fewest Redis calls a lock can make, through a client set up as
// rueidislock.Dial sets up its own. It is measured in the same run as the
// libraries, as the bound that none of them can beat on this host.

// floorClient returns a client for the node at addr, one of nodes, with
// the settings rueidislock.Dial gives its clients, closed when b ends.
func floorClient(b *testing.B, addr string, nodes int) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		PipelineMultiplex: -1,
		MaxFlushDelay:     rueidislock.DefaultFlushDelay * time.Duration(nodes),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// floorLocker takes a key with SET NX PX, and frees it with a
// compare-and-delete script: two round trips, the least a lock that frees
// only its own key can do. Over several nodes it sends each call to every
// node at once, a goroutine per node, as a quorum lock must: lock returns
// as soon as a majority set the key, and unlock waits for every node. It
// has no fencing, no renewal, no validity, no per-call timeout and no
// wake-ups: a refused lock polls every 1ms.
//
// With fenced set, it takes the key with fencedLock instead: the floor of
// a lock that gives fencing tokens in one round trip, as lock does.
type floorLocker struct {
	clients []rueidis.Client
	next    atomic.Uint64 // makes each lock's value
	fenced  bool
}

// fencedLock takes KEYS[1] for ARGV[1] for ARGV[2] milliseconds, as SET NX
// PX does, and raises the counter KEYS[2] to the proposed token ARGV[3]
// unless it is already higher: the common case of rueidislock's acquire
// script, with none of its queue, hand-over or refusal details. It answers
// 1 when it took the key.
var fencedLock = rueidis.NewLuaScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 0
end
local c = redis.call('SET', KEYS[2], ARGV[3], 'GET') or '0'
if tonumber(ARGV[3]) <= tonumber(c) then
	redis.call('SET', KEYS[2], c)
end
return 1
`)

// floorUnlock deletes KEYS[1] if it holds ARGV[1].
var floorUnlock = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// ttlMillis is lock.DefaultTTL in milliseconds, as fencedLock reads it.
var ttlMillis = strconv.FormatInt(lock.DefaultTTL.Milliseconds(), 10)

// floorHeld is what floorLocker.lock returns. calls, over several nodes,
// are the lock's calls, which unlock waits for, so that its call to a node
// never overtakes the SET it must undo there.
type floorHeld struct {
	key, value string
	calls      *floorCalls
}

func dialFloor(b *testing.B, addrs []string, _ bool) redisLocker {
	l := &floorLocker{}
	for _, addr := range addrs {
		l.clients = append(l.clients, floorClient(b, addr, len(addrs)))
	}
	return l
}

func dialFenced(b *testing.B, addrs []string, frozen bool) redisLocker {
	l := dialFloor(b, addrs, frozen).(*floorLocker)
	l.fenced = true
	return l
}

// each runs call on every node, at once if there are several, and returns
// how many calls succeeded once every node answered.
func (l *floorLocker) each(call func(c rueidis.Client) bool) int {
	set, calls := l.quorum(call)
	return calls.wait(set)
}

// floorCalls are calls that floorLocker.quorum made to several nodes.
type floorCalls struct {
	ok   atomic.Int32  // the calls that succeeded so far
	left atomic.Int32  // the calls not returned yet
	done chan struct{} // closed when the last call returns
}

// wait returns how many of the calls succeeded, once all have returned;
// set if there are no calls (nil: the one node's call returned).
func (c *floorCalls) wait(set int) int {
	if c == nil {
		return set
	}
	<-c.done
	return int(c.ok.Load())
}

// quorum runs call on every node, at once if there are several, and
// returns once a majority of calls succeeded, or enough failed that none
// can, how many had succeeded by then. The other calls run on, in calls.
func (l *floorLocker) quorum(call func(c rueidis.Client) bool) (set int, calls *floorCalls) {
	if len(l.clients) == 1 {
		if call(l.clients[0]) {
			return 1, nil
		}
		return 0, nil
	}
	calls = &floorCalls{done: make(chan struct{})}
	calls.left.Store(int32(len(l.clients)))
	replies := make(chan bool, len(l.clients))
	for _, c := range l.clients {
		go func() {
			r := call(c)
			if r {
				calls.ok.Add(1)
			}
			replies <- r
			if calls.left.Add(-1) == 0 {
				close(calls.done)
			}
		}()
	}
	need, refused := len(l.clients)/2+1, 0
	for range l.clients {
		if <-replies {
			set++
		} else {
			refused++
		}
		if set >= need || len(l.clients)-refused < need {
			break
		}
	}
	return set, calls
}

func (l *floorLocker) lock(ctx context.Context, key string) (any, error) {
	value := strconv.FormatUint(l.next.Add(1), 36)
	for {
		var failed atomic.Value
		var proposal string
		if l.fenced {
			// The token proposed, the same to every node: the wall
			// clock in microseconds, as lock proposes.
			proposal = strconv.FormatInt(time.Now().UnixMicro(), 10)
		}
		set, calls := l.quorum(func(c rueidis.Client) bool {
			if l.fenced {
				// The counter needs no hash tag: the nodes are not a
				// Cluster.
				n, err := fencedLock.Exec(ctx, c, []string{key, key + "\x00fence"}, []string{value, ttlMillis, proposal}).AsInt64()
				if err != nil {
					failed.Store(err)
				}
				return n == 1
			}
			err := c.Do(ctx, c.B().Set().Key(key).Value(value).Nx().Px(lock.DefaultTTL).Build()).Error()
			if err != nil && !rueidis.IsRedisNil(err) {
				failed.Store(err)
			}
			return err == nil
		})
		h := floorHeld{key, value, calls}
		if set > len(l.clients)/2 {
			return h, nil
		}
		set = calls.wait(set)
		if err, _ := failed.Load().(error); err != nil {
			return nil, err
		}
		if set > 0 {
			l.unlock(ctx, h) // a minority: give it back
		}
		select { // held by another: poll
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *floorLocker) unlock(ctx context.Context, held any) error {
	h := held.(floorHeld)
	h.calls.wait(0)
	var failed atomic.Value
	l.each(func(c rueidis.Client) bool {
		if err := floorUnlock.Exec(ctx, c, []string{h.key}, []string{h.value}).Error(); err != nil {
			failed.Store(err)
		}
		return true
	})
	err, _ := failed.Load().(error)
	return err
}

// redisPush1 is the floor of a hand-off pushed by the server, as lock's
// waiters are woken: one client publishes a message on a channel that
// another client subscribes to, and pauses 1ms after the subscriber heard
// it, as the workers of redisContended8 pause after each release. ns/op is
// per message; push-p50-us is the median time from the start of the
// PUBLISH call to the subscriber's callback. A hand-off does more: the
// release script's work, and the waiter's return.
func redisPush1(b *testing.B, _ dialFunc, servers []*redistest.Server) {
	pub := floorClient(b, servers[0].Addr(), 1)
	sub, cancel := floorClient(b, servers[0].Addr(), 1).Dedicate()
	b.Cleanup(cancel)
	heard := make(chan time.Time, 1)
	sub.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(rueidis.PubSubMessage) { heard <- time.Now() }})
	ctx := context.Background()
	if err := sub.Do(ctx, sub.B().Subscribe().Channel("bench:push").Build()).Error(); err != nil {
		b.Fatal(err)
	}
	publish := pub.B().Publish().Channel("bench:push").Message("released").Build().Pin()
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := pub.Do(ctx, publish).Error(); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-heard:
			took = append(took, at.Sub(start))
		case <-time.After(redisWaitLimit):
			b.Fatal("the subscriber heard nothing")
		}
		time.Sleep(time.Millisecond)
	}
	if d, ok := percentile([][]time.Duration{took}, 0.50); ok {
		b.ReportMetric(float64(d)/float64(time.Microsecond), "push-p50-us")
	}
}
