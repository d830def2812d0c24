package benchmarks

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	rueidisrl "github.com/redis/rueidis/rueidislock"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/benchutil"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// BenchmarkRedis compares Redis locks on the same redis-server processes,
// started by the benchmark, as BenchmarkRedis/<shape>/<impl>; see the
// package documentation for the shapes and implementations. Every
// implementation runs the same loop through redisLocker: lock a key, unlock
// it, with nothing in between. The servers are flushed before each
// implementation runs.
func BenchmarkRedis(b *testing.B) {
	servers := redistest.StartN(b, 5)
	version, _ := servers[0].Do("INFO", "server").ToString()
	b.Logf("redis-server %s on loopback, GOMAXPROCS %d", infoField(version, "redis_version"), runtime.GOMAXPROCS(0))

	for _, shape := range []struct {
		name  string
		nodes int
		impls []string // by name, from redisImpls
		run   func(b *testing.B, dial dialFunc, servers []*redistest.Server)
	}{
		{"uncontended1", 1, []string{"lock", "redsync", "redislock", "rueidis", "rueidis-km2", "floor", "fenced"}, redisUncontended1},
		{"uncontended16", 1, []string{"lock", "redsync", "redislock", "rueidis", "floor", "fenced"}, redisUncontended16},
		{"uncontended16-3nodes", 3, []string{"lock", "redsync", "floor", "fenced"}, redisUncontended16},
		{"uncontended16-5nodes", 5, []string{"lock", "redsync", "floor", "fenced"}, redisUncontended16},
		{"contended8", 1, []string{"lock", "redsync", "redislock", "rueidis"}, redisContended8},
		{"contended8-3nodes", 3, []string{"lock", "redsync"}, redisContended8},
		{"frozen1of3", 3, []string{"lock", "redsync"}, redisFrozen1of3},
		{"push1", 1, []string{"floor"}, redisPush1},
	} {
		b.Run(shape.name, func(b *testing.B) {
			for _, name := range shape.impls {
				dial := redisImpls[name]
				b.Run(name, func(b *testing.B) {
					defer watchdog(b)()
					nodes := servers[:shape.nodes]
					for _, s := range nodes {
						if err := s.FlushAll(); err != nil {
							b.Fatal(err)
						}
					}
					shape.run(b, dial, nodes)
				})
			}
		})
	}
}

// watchdog crashes the process, with every goroutine's stack, if b runs
// longer than go test's -timeout, which covers tests but not benchmarks: a
// lock call that never returns must not hang CI. It returns the func that
// stops it.
func watchdog(b *testing.B) (stop func()) {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return func() {}
	}
	d, _ := f.Value.(flag.Getter).Get().(time.Duration)
	if d <= 0 {
		return func() {}
	}
	name := b.Name()
	t := time.AfterFunc(d, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("%s still running after -timeout %v", name, d))
	})
	return func() { t.Stop() }
}

// infoField returns the value of field in the text of an INFO reply.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(unknown version)"
}

// A redisLocker is a Redis lock under test, with its own clients. lock
// waits until it holds key, as each library's blocking call does, and
// returns what unlock needs.
type redisLocker interface {
	lock(ctx context.Context, key string) (held any, err error)
	unlock(ctx context.Context, held any) error
}

// A dialFunc makes a redisLocker with clients of its own over the servers at
// addrs, and closes them when b ends. frozen says that one of the nodes is
// frozen, for the implementations whose release would otherwise wait for it
// without a bound.
type dialFunc func(b *testing.B, addrs []string, frozen bool) redisLocker

// redisImpls are the implementations, by name.
var redisImpls = map[string]dialFunc{
	"lock":        dialLease,
	"redsync":     dialRedsync,
	"redislock":   dialRedislock,
	"rueidis":     dialRueidis(1),
	"rueidis-km2": dialRueidis(2),
	"floor":       dialFloor,
	"fenced":      dialFenced,
}

// leaseRedis is this library: rueidislock.Dial with default options, and a
// Mutex with default options (leases renew themselves).
type leaseRedis struct{ m *lock.Mutex }

func dialLease(b *testing.B, addrs []string, _ bool) redisLocker {
	backend, err := rueidislock.Dial(addrs)
	if err != nil {
		b.Fatal(err)
	}
	m := lock.New(backend)
	b.Cleanup(func() { m.Close() })
	return leaseRedis{m}
}

func (l leaseRedis) lock(ctx context.Context, key string) (any, error) {
	return l.m.Acquire(ctx, key)
}

func (l leaseRedis) unlock(ctx context.Context, held any) error {
	return held.(*lock.Lease).Release(ctx)
}

// goredisClients returns a go-redis client per address, closed when b ends.
// ContextTimeoutEnabled makes them honour the deadlines redsync and the
// benchmark set; without it a command to a frozen node waits for
// ReadTimeout, 3s.
func goredisClients(b *testing.B, addrs []string) []*goredis.Client {
	clients := make([]*goredis.Client, len(addrs))
	for i, addr := range addrs {
		clients[i] = goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { clients[i].Close() })
	}
	return clients
}

// redsyncLocker is github.com/go-redsync/redsync/v4 over go-redis v9, one
// pool per node. Its retry delay is 1ms instead of a random 50-250ms, with
// unbounded tries, so that it polls as fast as is reasonable; its expiry
// is lock.DefaultTTL, and its timeout factor gives each attempt the node
// timeout of this library, 50ms.
type redsyncLocker struct {
	rs     *redsync.Redsync
	opts   []redsync.Option
	frozen bool
}

func dialRedsync(b *testing.B, addrs []string, frozen bool) redisLocker {
	pools := make([]redsyncredis.Pool, 0, len(addrs))
	for _, c := range goredisClients(b, addrs) {
		pools = append(pools, redsyncgoredis.NewPool(c))
	}
	return redsyncLocker{
		rs: redsync.New(pools...),
		opts: []redsync.Option{
			redsync.WithExpiry(lock.DefaultTTL),
			redsync.WithTries(math.MaxInt32),
			redsync.WithRetryDelay(time.Millisecond),
			redsync.WithTimeoutFactor(float64(rueidislock.DefaultNodeTimeout) / float64(lock.DefaultTTL)),
		},
		frozen: frozen,
	}
}

func (l redsyncLocker) lock(ctx context.Context, key string) (any, error) {
	m := l.rs.NewMutex(key, l.opts...)
	return m, m.LockContext(ctx)
}

func (l redsyncLocker) unlock(ctx context.Context, held any) error {
	if l.frozen {
		// Unlock waits for every node, bounded only by ctx: give it the
		// node timeout, as this library's Release has.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rueidislock.DefaultNodeTimeout)
		defer cancel()
	}
	ok, err := held.(*redsync.Mutex).UnlockContext(ctx)
	if !ok && err == nil {
		err = errors.New("redsync: unlock: not held")
	}
	return err
}

// redislockLocker is github.com/bsm/redislock over go-redis v9, on the
// first node only, with a TTL of lock.DefaultTTL and a linear backoff of
// 1ms.
type redislockLocker struct {
	c   *redislock.Client
	opt *redislock.Options
}

func dialRedislock(b *testing.B, addrs []string, _ bool) redisLocker {
	return redislockLocker{
		c:   redislock.New(goredisClients(b, addrs[:1])[0]),
		opt: &redislock.Options{RetryStrategy: redislock.LinearBackoff(time.Millisecond)},
	}
}

func (l redislockLocker) lock(ctx context.Context, key string) (any, error) {
	return l.c.Obtain(ctx, key, lock.DefaultTTL, l.opt)
}

func (l redislockLocker) unlock(ctx context.Context, held any) error {
	return held.(*redislock.Lock).Release(ctx)
}

// rueidisLocker is github.com/redis/rueidis/rueidislock on the first node
// only: it takes one client, and spreads its 2*KeyMajority-1 keys over
// nodes only when that client is a Cluster client. KeyMajority 1 is one key;
// the default, 2, is three keys on the one node. Waiters wake on client-side
// caching invalidations. NoLoopTracking stays off: with it, a waiter whose
// own attempt timed out (TryNextAfter, 20ms) after the server had set the
// key is never told that its clean-up deleted it, and waits forever.
type rueidisLocker struct{ l rueidisrl.Locker }

func dialRueidis(keyMajority int32) dialFunc {
	return func(b *testing.B, addrs []string, _ bool) redisLocker {
		l, err := rueidisrl.NewLocker(rueidisrl.LockerOption{
			ClientOption: rueidis.ClientOption{InitAddress: addrs[:1]},
			KeyMajority:  keyMajority,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(l.Close)
		return rueidisLocker{l}
	}
}

func (l rueidisLocker) lock(ctx context.Context, key string) (any, error) {
	_, cancel, err := l.l.WithContext(ctx, key)
	return cancel, err
}

// unlock calls the lock's cancel func, which deletes its keys and returns
// once they are deleted.
func (l rueidisLocker) unlock(_ context.Context, held any) error {
	held.(context.CancelFunc)()
	return nil
}

func addrsOf(servers []*redistest.Server) []string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// warm takes and frees a key of its own once, so that connections are
// made and scripts loaded before the clock runs.
func warm(b *testing.B, l redisLocker, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := l.lock(ctx, key)
	if err != nil {
		b.Fatalf("warm-up lock: %v", err)
	}
	if err := l.unlock(ctx, held); err != nil {
		b.Fatalf("warm-up unlock: %v", err)
	}
}

// redisUncontended1 is lock and unlock of one key by one goroutine: ns/op is
// the time of a cycle.
func redisUncontended1(b *testing.B, dial dialFunc, servers []*redistest.Server) {
	l := dial(b, addrsOf(servers), false)
	warm(b, l, "bench:warm")
	ctx := context.Background()
	failed := failures{what: "unlock"}
	b.ReportAllocs()
	for b.Loop() {
		held, err := l.lock(ctx, "bench:uncontended1")
		if err != nil {
			b.Fatal(err)
		}
		if err := l.unlock(ctx, held); err != nil {
			failed.add(b, err)
		}
	}
	failed.report(b)
}

// redisGoroutines is the number of goroutines of redisUncontended16.
const redisGoroutines = 16

// redisUncontended16 is lock and unlock by 16 goroutines sharing one
// locker, each with a key of its own: ns/op is the wall time per cycle, the
// inverse of the throughput. With GOMAXPROCS above 16 it runs one goroutine
// per CPU.
func redisUncontended16(b *testing.B, dial dialFunc, servers []*redistest.Server) {
	l := dial(b, addrsOf(servers), false)
	warm(b, l, "bench:warm")
	ctx := context.Background()
	var keys benchutil.KeySource
	failed := failures{what: "unlock"}
	b.SetParallelism((redisGoroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := "bench:" + keys.Next()
		for pb.Next() {
			held, err := l.lock(ctx, key)
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.unlock(ctx, held); err != nil {
				failed.add(b, err)
			}
		}
	})
	failed.report(b)
}

// redisWorkers is the number of workers of redisContended8.
const redisWorkers = 8

// redisWaitLimit bounds each lock call of redisContended8: the TTL, after
// which a key whose release failed is free again, and some slack. A call
// that reaches it counts as a failed lock (lock-errs/op), so that a lost
// wake-up costs the run this long, not forever.
const redisWaitLimit = lock.DefaultTTL + 5*time.Second

// redisContended8 is 8 workers, each with its own locker (and so its own
// clients), taking turns at one key: each locks it, unlocks it at once, and
// pauses 1ms before it asks again, so that the others are waiting. Each
// lock call has a context of its own, with a deadline, as a request would.
// ns/op is the wall time per acquisition. It reports acq/s, the acquisitions per
// second; handoff-p50-us, the median time from the start of a release to
// the return of the next acquisition; and wait-p99-ms, the 99th percentile
// of the time a lock call took.
func redisContended8(b *testing.B, dial dialFunc, servers []*redistest.Server) {
	lockers := make([]redisLocker, redisWorkers)
	for i := range lockers {
		lockers[i] = dial(b, addrsOf(servers), false)
		warm(b, lockers[i], fmt.Sprintf("bench:warm:%d", i))
	}

	var (
		left          atomic.Int64 // acquisitions still to make
		lastRelease   atomic.Int64 // when the last release began, as since(base)+1; 0 once taken
		base          = time.Now()
		waits         = make([][]time.Duration, redisWorkers)
		handoffs      = make([][]time.Duration, redisWorkers)
		wg            sync.WaitGroup
		failedLocks   = failures{what: "lock"}
		failedUnlocks = failures{what: "unlock"}
	)
	since := func() time.Duration { return time.Since(base) }
	left.Store(int64(b.N))
	b.ResetTimer()
	for i, l := range lockers {
		wg.Go(func() { // returns when no acquisitions are left
			for left.Add(-1) >= 0 {
				asked := since()
				ctx, cancel := context.WithTimeout(context.Background(), redisWaitLimit)
				held, err := l.lock(ctx, "bench:contended8")
				if err != nil {
					cancel()
					failedLocks.add(b, err)
					continue
				}
				got := since()
				waits[i] = append(waits[i], got-asked)
				if r := lastRelease.Swap(0); r != 0 {
					handoffs[i] = append(handoffs[i], got-time.Duration(r-1))
				}
				lastRelease.Store(int64(since()) + 1)
				if err := l.unlock(ctx, held); err != nil {
					failedUnlocks.add(b, err)
				}
				cancel()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	acquired := int64(b.N) - failedLocks.n.Load()
	b.ReportMetric(float64(acquired)/b.Elapsed().Seconds(), "acq/s")
	if d, ok := percentile(handoffs, 0.50); ok {
		b.ReportMetric(float64(d)/float64(time.Microsecond), "handoff-p50-us")
	}
	if d, ok := percentile(waits, 0.99); ok {
		b.ReportMetric(float64(d)/float64(time.Millisecond), "wait-p99-ms")
	}
	failedLocks.report(b)
	failedUnlocks.report(b)
}

// redisFrozen1of3 is redisUncontended1 over three nodes, the last of which
// is frozen (SIGSTOP) until the benchmark ends. ns/op is the time of a
// cycle; it also reports acq-p99-ms, the 99th percentile of the time a lock
// call took.
func redisFrozen1of3(b *testing.B, dial dialFunc, servers []*redistest.Server) {
	l := dial(b, addrsOf(servers), true)
	warm(b, l, "bench:warm")
	frozen := servers[len(servers)-1]
	if err := frozen.Freeze(); err != nil {
		b.Fatal(err)
	}
	// Cleanups run last first: the node thaws before the clients close.
	b.Cleanup(func() {
		if err := frozen.Thaw(); err != nil {
			b.Error(err)
		}
	})
	ctx := context.Background()
	var took []time.Duration
	failed := failures{what: "unlock"}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		held, err := l.lock(ctx, "bench:frozen1of3")
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		if err := l.unlock(ctx, held); err != nil {
			failed.add(b, err)
		}
	}
	failed.report(b)
	if d, ok := percentile([][]time.Duration{took}, 0.99); ok {
		b.ReportMetric(float64(d)/float64(time.Millisecond), "acq-p99-ms")
	}
}

// failures counts the calls of a run that returned an error. They are
// reported, not fatal: on a loaded host a node call can exceed a library's
// timeout although the server did free the key, and the next lock call
// shows in the results whether it did.
type failures struct {
	what string // "lock" or "unlock"
	n    atomic.Int64
}

func (f *failures) add(b *testing.B, err error) {
	if f.n.Add(1) == 1 {
		b.Logf("%s failed (logged once): %v", f.what, err)
	}
}

// report adds the metric <what>-errs/op if any call failed.
func (f *failures) report(b *testing.B) {
	if n := f.n.Load(); n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), f.what+"-errs/op")
	}
}

// percentile returns the q-quantile of the samples, by the nearest-rank
// method, and false if there are none.
func percentile(samples [][]time.Duration, q float64) (time.Duration, bool) {
	all := slices.Concat(samples...)
	if len(all) == 0 {
		return 0, false
	}
	slices.Sort(all)
	rank := int(math.Ceil(q * float64(len(all))))
	return all[max(rank, 1)-1], true
}
