package rueidislock

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/leaselock/lock"
)

// A hand-over gives a released key to the next waiter on the node itself:
// the release script sets the key to a value the waiter registered, and
// tells the waiter, which holds the lease without an attempt of its own.
// It saves the waiter a round trip at every hand-off of a contended key.
// A waiter registers with its refused attempt, whose value it then is
// (acquireLua), or, if that attempt's answer was lost, with register when
// it starts to wait.
//
// Only a single node hands over, where the queue of waiters lives, and
// only without a quarantine, whose checks belong to attempts. The lease is
// safe for the same reason an attempt's is: its validity is counted from
// when the waiter sent its registration, before the node could set the key
// with it, so the lease ends on the waiter's clock before the key can
// expire on the node's (the drift covers the clocks' rates, as it does for
// attempts). The registration expires when the waiter would have made its
// next attempt, so that a waiter that died is handed nothing after that;
// one that dies in the meantime holds the key until its TTL, as a holder
// that dies does.

// handsOver reports whether releases hand keys over to registered waiters.
func (b *Backend) handsOver() bool {
	return len(b.nodes) == 1 && b.quarantine.after == 0
}

// registration is a waiter's registration for a hand-over.
type registration struct {
	waiter string    // the waiter's name in the queue
	value  string    // what the key is set to
	start  time.Time // when the registration was sent, on package time
}

// handedOver reports whether up is the hand-over of the key to r.
func (r *registration) handedOver(up wakeUp) bool {
	return r != nil && up.token != 0 && up.digest == valueDigest(r.value)
}

// register queues waiter id of req's key on the single node and registers
// it for a hand-over while it waits for d at most. It reports free when the
// key is free, or already handed over to the waiter's last registration:
// the waiter should then make an attempt, which takes it. A registration
// that failed is nil: the waiter waits for a wake-up or its delay.
func (b *Backend) register(ctx context.Context, req *lock.Request, id string, d time.Duration) (reg *registration, free bool) {
	value, err := b.lockValue()
	if err != nil {
		return nil, false
	}
	expires := b.registrationLife(req, d)
	sent := b.clock.now()
	nctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	n := b.nodes[0]
	keys := []string{req.Key, queueKey(req.Key), registrationsKey(req.Key)}
	args := []string{id, value, strconv.FormatInt(req.TTL.Milliseconds(), 10), b.proposal(), strconv.FormatInt(expires.Milliseconds(), 10)}
	registered, err := registerScript.Exec(nctx, n.client, keys, args).AsInt64()
	if err != nil {
		if ctx.Err() == nil { // not the caller leaving
			lock.ReportNodeError(ctx, 0, n.addr, err)
		}
		return nil, false
	}
	if registered == 0 {
		return nil, true
	}
	// Start is put where the lock package's deadline, Start + TTL - Drift,
	// falls on this clock's deadline, as Acquire does (see clock.go).
	deadline := sent.Add(req.TTL - req.Drift)
	return &registration{waiter: id, value: value, start: b.clock.system(deadline).Add(req.Drift - req.TTL)}, false
}

// registrationLife returns how long a registration for a hand-over lasts,
// for the waiter of req that waits d: the wait, and the node timeout of
// the next attempt's call, but half the validity (TTL - Drift) at most,
// since a hand-over later than that would leave the lease too little of
// it, and one after the validity would be given back at once.
func (b *Backend) registrationLife(req *lock.Request, d time.Duration) time.Duration {
	return max(min(d+b.timeout, (req.TTL-req.Drift)/2), time.Millisecond)
}

// grant returns the Result of the hand-over of the key to r, with token.
func (r *registration) grant(token uint64) lock.Result {
	att := &attempt{start: r.start, waiter: r.waiter}
	att.state = append(att.buf[:0], granted)
	return lock.Result{Acquired: true, Token: token, Owner: r.value, Start: r.start, Handle: att}
}

// valueDigest returns what the scripts show of a lock value: the first 16
// hex digits of its SHA-1, which tells values apart without showing them.
func valueDigest(value string) string {
	sum := sha1.Sum([]byte(value))
	return hex.EncodeToString(sum[:8])
}
