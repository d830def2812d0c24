// Package rueidislock is a lock.Backend that keeps locks on N independent
// Redis nodes, through github.com/redis/rueidis, and holds a lock only while
// a majority of them agree: Redlock, with clock drift, per-node timeouts,
// fencing tokens and wake-ups on release.
//
// Its name is that of github.com/redis/rueidis/rueidislock, rueidis's own
// lock package. A program that needs both imports one under another name:
//
//	import (
//		"github.com/redis/rueidis/rueidislock"
//		leaselock "github.com/leaselock/lock/rueidislock"
//	)
//
// # Nodes
//
// Each node is an independent Redis server (or Sentinel group, or Cluster,
// as one rueidis.Client): never replicas of one another, since a replica
// that is promoted after a failover may not have the lock key. Use 3 or 5
// nodes: a majority of them must be up. Dial connects to addresses; New
// takes clients the caller built, with any rueidis option (TLS, ACL users,
// Sentinel, Cluster). Every node must run Redis 7.0 or later: the scripts
// use SET with GET, and PEXPIRE with NX and GT.
//
// # The algorithm
//
// An attempt sends one script to every node at once, each call bounded by
// the node timeout and by the attempt's deadline. The script sets the plain
// key to a value of 128 random bits with a PX TTL (SET NX PX, as node-redlock
// does, so that Go and Node services exclude each other). The attempt holds
// the lock as soon as a majority granted it, before the deadline, which is
// the time of sending plus the TTL minus the drift; it fails as soon as
// enough nodes refused that a majority is out of reach. A failed attempt
// deletes its value from every node, also from those that answer late; a
// node whose grant is heard after the lease's release is sent that delete
// unless the release deleted the key there itself (which it tells within
// the node timeout of the attempt on a healthy node).
// Extend and Release check the value too (compare-and-PEXPIRE,
// compare-and-delete); an extension counts only with a majority before the
// lease's deadline, and never sets a key that is gone. A release publishes
// on a channel of the key, and waiters subscribed to it wake. On a single
// node, waiters also queue in a list beside the key, and the release serves
// the first of them and no other, in whatever process it waits, with a
// message on that process's channel alone: the others would only fail to
// get the key. Over several nodes, whose queues could disagree, each
// process's longest waiter wakes once a majority announced the release. A
// waiter that gives up leaves the queue (lock.Leaver), as do those of a
// closing Backend; one that a release served as it left passes the key or
// the wake-up on. Only a process that dies while queued leaves its name
// there: the release that reaches it serves nobody, and the others try
// again at their retry delay, until the queue expires with the longest
// TTL of the attempts that queued in it.
//
// # Hand-over on a single node
//
// Without WithQuarantine, a waiter on a single node registers, in a hash
// beside the queue, the value it would set, its TTL and its fencing
// proposal (its refused attempt does, or the wait that follows an attempt
// whose answer was lost), and the release hands the key over: it sets the key to that
// value, raises the counter as an attempt would, and sends the waiter the
// token. The waiter holds the lease with no attempt of its own, one round
// trip sooner. Its validity counts from when it sent the registration,
// which the node received before it could set the key, so the lease still
// ends before the key can. A waiter that misses the message takes the key
// with its next attempt (the script knows the value handed over to it); a
// waiter that leaves frees a key handed over to it before its Acquire
// returns. A registration expires when its waiter would have made its next
// attempt anyway (its retry delay plus a node timeout, at most half the
// TTL), and a release skips an expired one. A process that dies within
// that time before a release is handed the key, which then stays until its
// TTL, as the key of a holder that dies does.
//
// The ACL rights the backend needs are in the README: the queue adds
// RPUSH, LPOS, LREM and LPOP, and the hand-over HSET, HGET, HDEL and TIME,
// all on keys that start with the lock's key.
//
// # Fencing tokens
//
// Beside each lock key lives a counter that never expires, in the same
// Redis Cluster hash slot. Every attempt proposes the current time in
// microseconds as the token: a node that grants raises its counter to the
// proposal if the proposal is larger. If a majority stored the proposal, it
// is the token: no extra round trip. Otherwise a second round raises a
// majority of the granting nodes to the largest counter seen plus one, and
// only on nodes that still hold the attempt's value.
//
// Why tokens strictly increase: when a lease is returned with token t, a
// majority of nodes hold a counter of at least t, written while the lease
// held the key there. The next holder's majority meets that majority in at
// least one node, which granted only after the previous key was gone, and
// whose counter was then at least t. Its proposal was stored there only if
// larger than t; and the second round goes above every counter it saw,
// that one included. The clock of a client only decides whether the second
// round is needed, never the order.
//
// This holds on three conditions, which the operator provides:
//
//   - Nodes do not lose writes: appendonly with appendfsync always; or a
//     node that lost its data stays out for longer than the longest TTL
//     and has its counters restored before it rejoins, which
//     WithQuarantine does (see below).
//   - Nothing evicts or flushes keys: maxmemory-policy noeviction, no
//     FLUSHALL. Under memory pressure attempts fail; extend and release
//     still work. New and Dial read the policy (CONFIG GET, once per
//     server) and refuse one that may evict, unless WithoutEvictionCheck
//     is given. A server down at construction, or one that refuses CONFIG
//     GET to an ACL user without that right, is not checked: there the
//     operator must see to it, and a later CONFIG SET goes unnoticed.
//   - The set of nodes is fixed, and every client uses the same one.
//
// A token is useful only if the storage the lock protects refuses a token
// smaller than the last it saw: that stops a holder that was paused past
// its deadline, which no lease can stop by itself.
//
// # Nodes that lose their data
//
// A node restarted without persistence forgets its keys: it would grant a
// lock whose holder still has it on the rest of its majority, and forget
// the fencing counters that keep tokens increasing. With WithQuarantine(d),
// every node keeps a birth mark; a node without one (new, or emptied by a
// restart) votes for no one until its birth is d old, d being at least the
// longest TTL, so every lease it forgot has ended; and before it votes, a
// client that met it raises its counters to the largest a majority of the
// other nodes hold, which includes every token issued, since any two
// majorities share a node. A new deployment waits d once. Every client of
// the nodes must use the same d.
//
// # Internal names
//
// The counter of key k is named after k with a NUL byte in its name, and
// keys with a NUL byte are refused, so that no user key can alias it. The
// release channel is "leaselock:released" followed by a NUL and the key.
package rueidislock
