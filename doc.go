// Package lock provides distributed locks held as leases. Every call that
// waits or talks to a backend takes a [context.Context].
//
// A [Mutex] locks keys in a [Backend]. [Mutex.Acquire] waits until the key is
// held or its context is done; [Mutex.TryAcquire] makes one attempt. A held
// lock is a [Lease]. Its context is cancelled when the lease ends, and
// [context.Cause] says why ([ErrReleased], [ErrLeaseLost], [ErrExpired]):
// run the protected work under it, and it stops before anyone else can start.
// [WithLock] and [Do] wrap the whole life of a lease around a function.
//
// The context given to Acquire bounds both the wait and the life of the
// lease: when it ends, the lease ends and the key is freed at once.
//
// # Backends
//
// Package memory keeps locks in one process: zero setup, exact, the backend
// of the examples and of tests. Package rueidislock keeps them on several
// independent Redis nodes and holds a lock only with a majority of them, for
// programs that run as many processes. Package lockconfig opens a Mutex
// from the LOCK_CONFIG JSON that services of the npm package @leverege/lock
// are deployed with.
//
// # The life of a lease
//
// An attempt that succeeds starts a lease with a deadline: the time the
// attempt was sent, plus the TTL, minus the drift (TTL times the drift factor,
// plus 2ms). No server lets the key expire before then, so a lease whose
// context is done by its deadline stops before another holder can start. By
// default a lease renews itself every third of its TTL ([WithAutoExtend]),
// moving its deadline; if a renewal is refused, or none succeeds before the
// deadline, the lease ends with [ErrLeaseLost]. A lease that does not renew
// itself ends at its deadline with [ErrExpired], unless [Lease.Extend] moved
// it.
//
// # Guarantees
//
//   - Exclusion: no two leases of one key have live contexts at once. In
//     memory, exactly; over Redis, under Redlock's assumptions: bounded clock
//     drift and a majority of nodes up without losing data.
//   - A lease's context is cancelled no later than its deadline, before the
//     key can expire on any server; a failed renewal cancels it by then too.
//   - Fencing: [Lease.Token] strictly increases across the successive holders
//     of a key. Pass it to the storage the lock protects, and let the storage
//     refuse a token smaller than the last one it saw: that stops a holder
//     that was paused past its deadline, which no lease can stop by itself.
//   - Nothing left behind: a failed or cancelled Acquire holds nothing;
//     Release never frees another holder's key and is idempotent.
//   - No polling where a backend can tell: a release wakes a waiter.
//   - No goroutine outlives Release or [Mutex.Close].
//   - A bad argument is an error matching [ErrInvalid] that names it, never a
//     panic.
//
// # Goroutines
//
// A Lease that renews itself does so on a timer, whose goroutine runs only
// while it extends the lease; an extension under way has finished when
// Release returns. A lease of the memory backend needs not even the timer:
// renewal within one process cannot fail, so the backend keeps the key
// until Release.
// Call Release on every Lease, even one already lost.
//
// # Observability
//
// [WithLogger] logs each acquisition, renewal, loss and release, and each
// failure of one node of a backend, with the key, the fencing token and
// durations, never a lock's value. [WithObserver] gives the same events to
// a [Observer], such as package lockotel's, which records them as
// OpenTelemetry metrics. Neither costs anything when unset.
//
// # Where the guarantees do not hold
//
// Over Redis, exclusion rests on Redlock's assumptions. A node that loses
// its data (a restart without appendfsync always), an eviction policy that
// drops keys, a server clock that jumps, or nodes that are replicas of one
// another can let two holders in; package rueidislock documents the
// configuration the guarantees need. No lease stops a process that was
// paused past its deadline from acting afterwards: that is what fencing
// tokens are for, and only if the protected storage checks them.
package lock
