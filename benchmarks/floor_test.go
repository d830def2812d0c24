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

// floorClient returns a client for the node at addr with the settings
// rueidislock.Dial gives a single node's client, closed when b ends.
func floorClient(b *testing.B, addr string) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		PipelineMultiplex: -1,
		MaxFlushDelay:     rueidislock.DefaultFlushDelay,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// floorLocker takes a key with SET NX PX, and frees it with a
// compare-and-delete script, on the first node only: two round trips, the
// least a lock that frees only its own key can do. It has no fencing, no
// renewal, no validity and no wake-ups: a refused lock polls every 1ms.
type floorLocker struct {
	c    rueidis.Client
	next atomic.Uint64 // makes each lock's value
}

// floorUnlock deletes KEYS[1] if it holds ARGV[1].
var floorUnlock = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// floorHeld is what floorLocker.lock returns.
type floorHeld struct{ key, value string }

func dialFloor(b *testing.B, addrs []string, _ bool) redisLocker {
	return &floorLocker{c: floorClient(b, addrs[0])}
}

func (l *floorLocker) lock(ctx context.Context, key string) (any, error) {
	value := strconv.FormatUint(l.next.Add(1), 36)
	for {
		err := l.c.Do(ctx, l.c.B().Set().Key(key).Value(value).Nx().Px(lock.DefaultTTL).Build()).Error()
		if err == nil {
			return floorHeld{key, value}, nil
		}
		if !rueidis.IsRedisNil(err) {
			return nil, err
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
	return floorUnlock.Exec(ctx, l.c, []string{h.key}, []string{h.value}).Error()
}

// redisPush1 is the floor of a hand-off pushed by the server, as lock's
// waiters are woken: one client publishes a message on a channel that
// another client subscribes to, and pauses 1ms after the subscriber heard
// it, as the workers of redisContended8 pause after each release. ns/op is
// per message; push-p50-us is the median time from the start of the
// PUBLISH call to the subscriber's callback. A hand-off does more: the
// release script's work, and the waiter's return.
func redisPush1(b *testing.B, _ dialFunc, servers []*redistest.Server) {
	pub := floorClient(b, servers[0].Addr())
	sub, cancel := floorClient(b, servers[0].Addr()).Dedicate()
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
