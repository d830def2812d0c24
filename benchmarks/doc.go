// Package benchmarks compares package lock with other Go keyed locks,
// measured in the same process, so that the results are ratios on one machine
// rather than numbers from different ones.
//
// It is a module of its own, so that the peers it measures never become
// dependencies of github.com/leaselock/lock; its go.mod points at the
// library in the parent directory with a replace directive. Run it from this
// directory:
//
//	go test -run xxx -bench . -count 5 ./... | tee new.txt
//	benchstat new.txt
//
// The Redis benchmarks alone, 3 runs of 2s each:
//
//	go test -run '^$' -bench Redis -count 3 -benchtime 2s ./... | tee redis.txt
//	benchstat redis.txt
//
// CI runs every benchmark once, to keep them building and working:
//
//	go vet ./... && go test -run xxx -bench . -benchtime=1x ./...
//
// BenchmarkMemory measures in-process keyed locks as
// BenchmarkMemory/<shape>/<impl>, in five shapes: uncontended (one
// goroutine, one key), distinct (b.RunParallel, a key per goroutine) and hot
// (b.RunParallel, one key), and distinct-x8 and hot-x8, the same with 8
// goroutines per CPU, as a server runs more goroutines than CPUs. The
// implementations are lock (this library on its
// memory backend, with default options), moby (github.com/moby/locker),
// mapmutex (a map of mutexes behind one mutex) and syncmutex (sync.Mutex, one
// per goroutine for distinct keys). The hot shape also reports max-wait-ms:
// the longest time a goroutine went between two of its lock and unlock
// rounds, a bound on the longest a lock call waited. It counts every pause of
// the process or the host too, so read it on a quiet machine.
//
// BenchmarkRedis measures Redis locks as BenchmarkRedis/<shape>/<impl>, all
// against the same redis-server processes, which it starts itself on
// loopback ports (package internal/redistest) and flushes before each
// implementation. Without redis-server on the PATH it is skipped, or fails
// when LOCK_REQUIRE_REDIS=1. The implementations, each with its own clients:
//
//   - lock: this library, rueidislock.Dial and lock.New with default
//     options (leases renew themselves; waiters wake on a release
//     published by the server);
//   - redsync: github.com/go-redsync/redsync/v4 over go-redis v9, a pool per
//     node, with a 1ms retry delay, unbounded tries, an expiry of
//     lock.DefaultTTL and each attempt bounded by 50ms, the node timeout of
//     this library;
//   - redislock: github.com/bsm/redislock over go-redis v9, one node, a
//     linear backoff of 1ms;
//   - rueidis: github.com/redis/rueidis/rueidislock with KeyMajority 1, one
//     node, and rueidis-km2, its default KeyMajority 2 (three keys on the
//     one node: it takes a single client, and spreads its keys over nodes
//     only through Redis Cluster). Waiters wake on client-side caching
//     invalidations;
//   - floor: no library, the least a lock can cost: SET NX PX to take the
//     key and a compare-and-delete script to free it, through rueidis
//     clients with the settings rueidislock.Dial gives its own (one
//     connection, MaxFlushDelay of rueidislock.DefaultFlushDelay per
//     node); over several nodes each call goes to every node at once, a
//     goroutine per node, a lock returns as soon as a majority set the
//     key (as lock decides), and an unlock waits for every node. No
//     fencing, validity, renewal, per-call timeouts or wake-ups (it polls
//     every 1ms). It bounds what any library can do on the host, measured
//     in the same run.
//   - fenced: the floor with a fencing token, in the same round trip: its
//     SET NX PX is a script that also raises the key's counter to a
//     proposed token, as lock's acquire script does when the key is free.
//     Still no validity, renewal, per-call timeouts or wake-ups. It bounds
//     what a lock that gives fencing tokens can do on the host.
//
// The go-redis clients honour context deadlines (ContextTimeoutEnabled).
// The shapes:
//
//   - uncontended1: one goroutine locks and unlocks one key on one node;
//     ns/op is a cycle (1e9/ns cycles per second).
//   - uncontended16, uncontended16-3nodes, uncontended16-5nodes: 16
//     goroutines (b.SetParallelism) share one locker, each with a key of
//     its own, over 1, 3 or 5 nodes; ns/op is wall time per cycle.
//   - contended8, contended8-3nodes: 8 workers, each with its own locker,
//     take turns at one key on 1 or 3 nodes, pausing 1ms after each
//     release. It reports acq/s, handoff-p50-us (from the start of a
//     release to the return of the next acquisition) and wait-p99-ms (the
//     time a lock call took).
//   - frozen1of3: uncontended1 over 3 nodes, one of them frozen (SIGSTOP)
//     for the whole run; acq-p99-ms is the 99th percentile of a lock call.
//     redsync's unlock, which waits for every node, gets a 50ms context.
//   - push1: floor only, the floor of a hand-off pushed by the server: one
//     client publishes a message that another client's subscription hears,
//     then pauses 1ms, as the contended8 workers pause; push-p50-us is the
//     median from the start of the PUBLISH to the subscriber's callback. A
//     hand-off of lock travels the same path, with a release script before
//     it and the waiter's return after it.
//
// A failed unlock, and in contended8 a lock call that reaches its limit
// (the TTL plus 5s), is counted rather than fatal, as unlock-errs/op and
// lock-errs/op: a node call can outlast a library's timeout on a loaded
// host, and a lost wake-up should cost a run seconds, not hang it.
//
// The module needs Go 1.26, as the newest redsync and go-redis do; the
// library itself does not.
package benchmarks
