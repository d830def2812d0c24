package rueidislock

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

var _ lock.Waiter = (*Backend)(nil)

// linger is how long a key's subscriptions outlive its last waiter. A key
// that is waited for again soon, as a contended key is after every
// hand-off, keeps them instead of paying for a SUBSCRIBE and an
// UNSUBSCRIBE each time.
const linger = time.Second

// resubscribeDelay is how long a node whose subscription failed is left
// alone before a waiter tries it again, so that a dead node does not cost
// every waiter a node timeout.
const resubscribeDelay = time.Second

// notifier wakes waiters when a key is released. The release script
// publishes on the key's channel on every node it frees; the notifier keeps
// one subscribing connection per node, made on first need, and subscribes
// to a key's channel while someone waits for that key, and for linger
// after. A node whose connection fails only stops waking waiters early:
// they still wake at the holder's TTL or the retry delay.
type notifier struct {
	mu      sync.Mutex
	conns   []*subConn        // per node; nil until needed
	retryAt []time.Time       // per node: no new subscription before
	watches map[string]*watch // by channel
	// queued holds the waiters of this process, by name, that the single
	// node may keep in a key's queue or registrations, with their keys:
	// Close takes them out.
	queued  map[string]string
	nqueued atomic.Int32   // len(queued)
	reaper  *time.Timer    // armed while a watch is idle
	workers sync.WaitGroup // connecting or unsubscribing; Close waits
	closed  bool
}

// subConn is one node's subscribing connection. It is made in the
// background: a node that does not answer can hold the dial for the
// client's dial timeout, far longer than a waiter should wait.
type subConn struct {
	ready  chan struct{} // closed once the connection is made or failed
	client rueidis.DedicatedClient
	cancel func() // gives the connection back to the client's pool
	dead   <-chan error
	gone   atomic.Bool // dead was seen: it may hold an error rather than be closed
}

// alive reports whether c is made and still connected.
func (c *subConn) alive() bool {
	select {
	case <-c.ready:
	default:
		return false
	}
	if c.gone.Load() {
		return false
	}
	select {
	case <-c.dead:
		c.gone.Store(true)
		return false
	default:
		return true
	}
}

// connecting reports whether c is still being made.
func (c *subConn) connecting() bool {
	select {
	case <-c.ready:
		return false
	default:
		return true
	}
}

// watch is the interest of waiters in one channel. A release wakes one
// waiter, the one that has waited longest, rather than all of them: waiters
// woken together would split the nodes' votes between them and all fail.
type watch struct {
	refs  int
	queue []waiting  // waiters not yet woken, oldest first
	subs  []*subConn // per node: the connection subscribed, or nil

	// busy is closed when the SUBSCRIBE or UNSUBSCRIBE being sent for the
	// watch is done; nil when none is.
	busy chan struct{}

	since time.Time       // when a subscription last began to stand
	heard time.Time       // when the last release was heard
	idle  time.Time       // when the last waiter left
	seen  [4]heardRelease // the last releases heard, by name
	named [4]namedWake    // the last wake-ups of this process's waiters by name
}

// waiting is one waiter of a watch.
type waiting struct {
	wake chan wakeUp
	id   string // its name in the key's queue on the node, if it has one
}

// wakeUp is what wakes a waiter: a release, which may have handed the key
// over to the waiter (see handover.go).
type wakeUp struct {
	token  uint64 // the hand-over's fencing token; 0 for a plain wake-up
	digest string // the digest of the value the key was handed over with
}

// namedWake is a release that named one of this process's waiters.
type namedWake struct {
	id string
	at time.Time
}

// heardRelease counts the nodes that announced one release.
type heardRelease struct {
	name  string
	nodes int
}

// watch makes the caller a waiter of channel: it subscribes on every node
// where the channel is not yet subscribed and returns when the
// subscriptions stand, or failed, each within the node timeout. wake
// receives at a release heard after that. The caller must call unwatch
// when it stops waiting. It returns a nil watch after Close.
func (b *Backend) watch(ctx context.Context, channel, id string) (w *watch, wake chan wakeUp) {
	n := &b.notes
	n.mu.Lock()
	for {
		if n.closed {
			n.mu.Unlock()
			return nil, nil
		}
		w = n.watches[channel]
		if w == nil {
			w = &watch{subs: make([]*subConn, len(b.nodes))}
			if n.watches == nil {
				n.watches = make(map[string]*watch)
			}
			n.watches[channel] = w
		}
		if w.busy == nil {
			break
		}
		// Another waiter is subscribing, or the reaper unsubscribing:
		// wait for it, within the node timeout, then look again.
		busy := w.busy
		n.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, nil
		}
		n.mu.Lock()
	}
	w.refs++
	wake = make(chan wakeUp, 1)
	w.queue = append(w.queue, waiting{wake: wake, id: id})
	missing := b.missingLocked(w)
	if len(missing) == 0 {
		n.mu.Unlock()
		return w, wake
	}
	w.busy = make(chan struct{})
	n.mu.Unlock()

	// Detached: a waiter that leaves must not make the node look down.
	subs := make([]*subConn, len(missing))
	b.eachNode(context.WithoutCancel(ctx), missing, func(ctx context.Context, k int) {
		c := b.subConn(missing[k])
		if c == nil {
			return
		}
		select {
		case <-c.ready:
		case <-ctx.Done():
			return
		}
		if !c.alive() {
			return
		}
		// The PING answers once the server has taken the subscription:
		// replies come in order. Both go in one write.
		res := c.client.DoMulti(ctx,
			c.client.B().Subscribe().Channel(b.channels(channel)...).Build(),
			c.client.B().Ping().Build())
		if err := errors.Join(res[0].Error(), res[1].Error()); err != nil {
			i := missing[k]
			lock.ReportNodeError(ctx, i, b.nodes[i].addr, err) // to the Mutex's Observer, if any
			return
		}
		subs[k] = c
	})

	n.mu.Lock()
	now := time.Now()
	for k, i := range missing {
		if subs[k] == nil {
			n.retryAt[i] = now.Add(resubscribeDelay)
			continue
		}
		w.subs[i] = subs[k]
		w.since = now
	}
	close(w.busy)
	w.busy = nil
	n.mu.Unlock()
	return w, wake
}

// channels returns the channels a watch of channel, a key's, subscribes
// to: the key's, and on a single node, where releases name the waiter they
// wake, also this process's waiters' channel of the key (see waitersMark).
func (b *Backend) channels(channel string) []string {
	if len(b.nodes) != 1 {
		return []string{channel}
	}
	return []string{channel, channel + b.ownWaiters}
}

// missingLocked lists the nodes where w has no live subscription and a new
// one may be tried.
func (b *Backend) missingLocked(w *watch) []int {
	n := &b.notes
	if n.retryAt == nil {
		n.retryAt = make([]time.Time, len(b.nodes))
	}
	var missing []int
	now := time.Now()
	for i, c := range w.subs {
		if (c == nil || !c.alive()) && !now.Before(n.retryAt[i]) {
			w.subs[i] = nil
			missing = append(missing, i)
		}
	}
	return missing
}

// unwatch ends the caller's wait on w. The subscriptions stay for linger,
// for the next waiter.
func (b *Backend) unwatch(w *watch, wake chan wakeUp) {
	n := &b.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if i := slices.IndexFunc(w.queue, func(q waiting) bool { return q.wake == wake }); i >= 0 {
		w.queue = slices.Delete(w.queue, i, i+1)
	} else if len(wake) > 0 && len(w.queue) > 0 {
		// Woken but leaving without using the wake-up (its attempt won or
		// its context ended): pass it on.
		w.wakeOldest()
	}
	w.refs--
	if w.refs == 0 {
		w.idle = time.Now()
		if n.reaper == nil && !n.closed {
			n.reaper = time.AfterFunc(linger, b.reap)
		}
	}
}

// reap unsubscribes the watches idle for linger, and comes back while
// others are idle.
func (b *Backend) reap() {
	n := &b.notes
	n.mu.Lock()
	n.reaper = nil
	if n.closed {
		n.mu.Unlock()
		return
	}
	var (
		now  = time.Now()
		gone = make(map[string]*watch)
		next time.Duration // until the next idle watch is due
		subs = make(map[*subConn][]string)
	)
	for channel, w := range n.watches {
		if w.refs > 0 || w.busy != nil {
			continue
		}
		if left := linger - now.Sub(w.idle); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		// Busy until unsubscribed: a waiter that comes meanwhile waits and
		// makes a new watch, whose SUBSCRIBE cannot be overtaken by this
		// UNSUBSCRIBE.
		gone[channel] = w
		w.busy = make(chan struct{})
		for _, c := range w.subs {
			if c != nil && c.alive() {
				subs[c] = append(subs[c], b.channels(channel)...)
			}
		}
	}
	if next > 0 {
		n.reaper = time.AfterFunc(next, b.reap)
	}
	n.workers.Add(1)
	n.mu.Unlock()
	defer n.workers.Done()

	var wg sync.WaitGroup
	for c, channels := range subs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
			defer cancel()
			c.client.Do(ctx, c.client.B().Unsubscribe().Channel(channels...).Build())
		})
	}
	wg.Wait()

	n.mu.Lock()
	for channel, w := range gone {
		if n.watches[channel] == w {
			delete(n.watches, channel)
		}
		close(w.busy)
		w.busy = nil
	}
	n.mu.Unlock()
}

// onMessage wakes the oldest waiter of the message's channel once the
// release it announces is heard from a majority of the nodes (or from
// every node the watch listens to, if fewer): every node the release frees
// announces it under the same name, and an attempt made before a majority
// is free would fail.
func (b *Backend) onMessage(m rueidis.PubSubMessage) {
	n := &b.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	w := n.watches[strings.TrimSuffix(m.Channel, b.ownWaiters)]
	if w == nil {
		return
	}
	if id, named := strings.CutPrefix(m.Message, "\x00"); named {
		// The release woke the waiter first in the node's queue.
		w.wakeNamed(b.id, id, wakeUp{})
		return
	}
	if handed, ok := strings.CutPrefix(m.Message, "\x01"); ok {
		// The release handed the key over to the waiter first in the
		// node's queue: "token digest name".
		token, rest, _ := strings.Cut(handed, " ")
		digest, id, _ := strings.Cut(rest, " ")
		if t, err := strconv.ParseUint(token, 10, 64); err == nil && t > 0 {
			w.wakeNamed(b.id, id, wakeUp{token: t, digest: digest})
		}
		return
	}
	if m.Message != "" && b.quorum > 1 {
		i := slices.IndexFunc(w.seen[:], func(h heardRelease) bool { return h.name == m.Message })
		if i < 0 {
			copy(w.seen[1:], w.seen[:len(w.seen)-1])
			w.seen[0], i = heardRelease{name: m.Message}, 0
		}
		w.seen[i].nodes++
		need := 0
		for _, c := range w.subs {
			if c != nil && c.alive() {
				need++
			}
		}
		if w.seen[i].nodes != min(b.quorum, max(need, 1)) {
			return // not yet, or woken already
		}
	}
	w.heard = time.Now()
	w.wakeOldest()
}

// wakeOldest wakes the waiter that has waited longest, if any.
func (w *watch) wakeOldest() {
	if len(w.queue) > 0 {
		w.queue[0].wake <- wakeUp{}
		w.queue = w.queue[1:]
	}
}

// wakeNamed wakes the waiter id, named by a release, with up, if it is one
// of the waiters of the process named process, and remembers the wake-up
// for namedSince: the waiter may be between two waits.
func (w *watch) wakeNamed(process, id string, up wakeUp) {
	if !strings.HasPrefix(id, process) {
		return // another process's
	}
	copy(w.named[1:], w.named[:len(w.named)-1])
	w.named[0] = namedWake{id: id, at: time.Now()}
	if i := slices.IndexFunc(w.queue, func(q waiting) bool { return q.id == id }); i >= 0 {
		w.queue[i].wake <- up
		w.queue = slices.Delete(w.queue, i, i+1)
	}
}

// namedSince reports whether a release named the waiter id at or after t.
func (w *watch) namedSince(id string, t time.Time) bool {
	for _, nw := range w.named {
		if nw.id == id && !nw.at.Before(t) {
			return true
		}
	}
	return false
}

// subConn returns node i's subscribing connection, made or being made,
// or nil after Close.
func (b *Backend) subConn(i int) *subConn {
	n := &b.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	if n.conns == nil {
		n.conns = make([]*subConn, len(b.nodes))
	}
	if c := n.conns[i]; c != nil && (c.connecting() || c.alive()) {
		return c
	} else if c != nil && c.cancel != nil {
		c.cancel() // failed: make another
	}
	c := &subConn{ready: make(chan struct{})}
	n.conns[i] = c
	n.workers.Add(1)
	go b.connect(i, c)
	return c
}

// connect makes c, a subscribing connection to node i.
func (b *Backend) connect(i int, c *subConn) {
	n := &b.notes
	defer n.workers.Done()
	client, cancel := subscriber(b.nodes[i].client).Dedicate()
	dead := client.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		cancel()
		c.dead = closedErrs
	} else {
		c.client, c.cancel, c.dead = client, cancel, dead
	}
	close(c.ready)
}

// closedErrs is a dead connection's channel.
var closedErrs = func() <-chan error {
	ch := make(chan error)
	close(ch)
	return ch
}()

// subscriber returns the client to subscribe through for node c. A Cluster
// delivers a PUBLISH to every shard, so one shard's connection hears every
// release; a dedicated connection of the cluster client itself would not
// know which shard to reach.
func subscriber(c rueidis.Client) rueidis.Client {
	if c.Mode() != rueidis.ClientModeCluster {
		return c
	}
	shards := c.Nodes()
	addrs := make([]string, 0, len(shards))
	for addr := range shards {
		addrs = append(addrs, addr)
	}
	if len(addrs) == 0 {
		return c
	}
	slices.Sort(addrs)
	return shards[addrs[0]]
}

// close stops the notifier and wakes every waiter; closeConns, once no
// call is under way, gives the connections back.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	if n.reaper != nil {
		n.reaper.Stop()
		n.reaper = nil
	}
	// Wake every waiter, whose next attempt then meets the closed Backend:
	// left alone, it would sleep until a release, its delay or the
	// holder's TTL.
	for _, w := range n.watches {
		for len(w.queue) > 0 {
			w.wakeOldest()
		}
	}
	n.mu.Unlock()
}

// closeConns gives the subscribing connections back, once close was called
// and no Wait is under way to use them.
func (n *notifier) closeConns() {
	n.workers.Wait()
	for _, c := range n.conns {
		if c != nil && c.cancel != nil {
			c.cancel()
		}
	}
}

// eachNode runs f(k) for every k of nodes at once, each bounded by the
// node timeout, and returns when all have.
func (b *Backend) eachNode(ctx context.Context, nodes []int, f func(ctx context.Context, k int)) {
	var wg sync.WaitGroup
	for k := range nodes {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, b.timeout)
			defer cancel()
			f(nctx, k)
		})
	}
	wg.Wait()
}

// Wait listens for the key's release, then waits for it, for d, or for
// ctx, whichever comes first, and tells the Mutex to make its next attempt.
// req.Handle is the Handle of the caller's last attempt: Wait returns at
// once if a release was heard since that attempt began, and makes an
// attempt itself first if its subscription is newer than that attempt,
// which could have missed a release in between.
func (b *Backend) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	if !b.enter(1) {
		return lock.Result{}, lock.ErrClosed
	}
	defer b.calls.Done()
	if err := b.check(&req); err != nil {
		return lock.Result{}, err
	}
	next := lock.Result{Owner: req.Owner}
	id := b.waiterID(&req)
	w, wake := b.watch(ctx, releasedChannel(req.Key), id)
	if w == nil {
		if b.closed.Load() {
			return lock.Result{}, lock.ErrClosed
		}
		return next, nil // ctx ended
	}
	defer b.unwatch(w, wake)

	att, ok := req.Handle.(*attempt)
	if ok {
		b.notes.mu.Lock()
		heard, since := !w.heard.Before(att.start), !w.since.Before(att.start)
		heard = heard || id != "" && w.namedSince(id, att.start)
		b.notes.mu.Unlock()
		if heard {
			// A release since the last attempt began, heard before this
			// waiter queued: the key may be free.
			return next, nil
		}
		ok = !since
	}
	if !ok {
		// The subscription is newer than the last attempt, or the caller
		// did not say when that was: a release before it would be missed,
		// so make an attempt now that it stands.
		res, err := b.Acquire(ctx, req)
		if err != nil || res.Acquired {
			return res, err
		}
		next.Owner = res.Owner
		att, _ = res.Handle.(*attempt)
		if res.HolderTTL > 0 && res.HolderTTL < d {
			d = res.HolderTTL
		}
	}
	var reg *registration
	switch {
	case id == "":
	case b.handsOver() && att != nil && att.registered != nil:
		reg = att.registered // the refusal registered the waiter
	case b.handsOver():
		// Register for a hand-over, which queues the waiter too, unless
		// the key is free.
		var free bool
		if reg, free = b.register(ctx, &req, id, d); free {
			return next, nil
		}
		b.notes.setQueued(id, req.Key, true) // or may be, if the reply was lost
	case ok && !att.queued:
		// The last attempt was refused before the caller began to wait,
		// so it did not queue: queue now, unless the key is free.
		if b.enqueue(ctx, req.Key, id, req.TTL) {
			return next, nil
		}
		b.notes.setQueued(id, req.Key, true) // or may be, if the reply was lost
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case up := <-wake:
		if reg.handedOver(up) {
			if b.closed.Load() {
				// Close may have freed this key and handed it to
				// another waiter already, or frees it once this call
				// returns (leaveQueues).
				return lock.Result{}, lock.ErrClosed
			}
			b.notes.setQueued(id, req.Key, false)
			return reg.grant(up.token), nil
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return next, nil
}

var _ lock.Leaver = (*Backend)(nil)

// Leave takes a waiter that gives up out of the key's queue on a single
// node, or the next release would wake nobody while others sleep.
//
// Where releases hand keys over, one may have handed the key to this
// waiter: Leave then frees it before it returns, since an Acquire that
// fails must hold nothing.
//
// After Close, Leave does nothing: Close took every waiter of the Backend
// out of its queue.
func (b *Backend) Leave(ctx context.Context, req lock.Request) {
	id := b.waiterID(&req)
	switch {
	case id == "":
	case b.handsOver():
		if !b.enter(1) {
			return
		}
		defer b.calls.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout*releaseTimeouts)
		defer cancel()
		b.leaveQueue(ctx, req.Key, id)
	default:
		b.dequeue(ctx, req.Key, id)
	}
}

// waiterID returns the name under which the waiter of req waits in the
// key's queue on the node, or "" if it does not queue. Only a single node
// keeps a queue: a release there wakes the waiter first in it, and only
// that one, where waking every waiter would have all but one fail. Over
// several nodes, queues could name different waiters, none heard from a
// majority, so releases wake every process's oldest waiter instead.
//
// The name is the Backend's id, a colon, and when the wait began: the
// release script reads the process from it, and wakes the waiter on its
// process's channel (see waitersMark).
func (b *Backend) waiterID(req *lock.Request) string {
	if len(b.nodes) != 1 || req.Since.IsZero() {
		return ""
	}
	return b.id + ":" + strconv.FormatInt(req.Since.UnixNano(), 36)
}

// dequeue takes waiter id out of key's queue on the single node, in the
// background: the caller is leaving, and Close waits for the call. If a
// release took the waiter out first, and so woke it in vain, the key is
// free: the script wakes the next waiter instead.
func (b *Backend) dequeue(ctx context.Context, key, id string) {
	if !b.enter(1) {
		return
	}
	go func() {
		defer b.calls.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
		defer cancel()
		b.leaveQueue(ctx, key, id)
	}()
}

// leaveQueue runs dequeueScript for waiter id of key on the single node,
// and forgets the waiter, even if the call failed: the node forgets it
// with the queue's TTL, and a Backend must not keep every waiter a failing
// node did not answer for.
func (b *Backend) leaveQueue(ctx context.Context, key, id string) {
	dequeueScript.Exec(ctx, b.nodes[0].client, singleNodeKeys(key), []string{id, releasedChannel(key)})
	b.notes.setQueued(id, key, false)
}

// leaveQueues takes every waiter the node may keep for the Backend out of
// its key's queue and registrations, on Close, once no call is under way:
// their Acquires end with ErrClosed, and no release must wake them or hand
// them a key. It frees a key handed over to one of them (dequeueScript).
// The calls go at once, on the one connection, within one release timeout.
func (b *Backend) leaveQueues() {
	n := &b.notes
	n.mu.Lock()
	left := n.queued
	n.queued = nil
	n.nqueued.Store(0)
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout*releaseTimeouts)
	defer cancel()
	var wg sync.WaitGroup
	for id, key := range left {
		wg.Go(func() { b.leaveQueue(ctx, key, id) })
	}
	wg.Wait()
}

// setQueued records whether the single node may keep waiter id of key in
// the key's queue or registrations, for Close to take it out.
func (n *notifier) setQueued(id, key string, queued bool) {
	if !queued && n.nqueued.Load() == 0 {
		// Nobody queued: the common case of a grant at the first
		// attempt. A waiter is queued only by its own calls, which come
		// one after the other, so it cannot be being added.
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !queued:
		delete(n.queued, id)
	case n.queued == nil:
		n.queued = map[string]string{id: key}
	default:
		n.queued[id] = key
	}
	n.nqueued.Store(int32(len(n.queued)))
}

// enqueue puts waiter id in key's queue on the single node, unless the
// key is free, which it reports. A waiter the node failed to queue waits
// for its delay, as it would if nobody woke it.
func (b *Backend) enqueue(ctx context.Context, key, id string, ttl time.Duration) (free bool) {
	nctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	n := b.nodes[0]
	queued, err := enqueueScript.Exec(nctx, n.client, []string{key, queueKey(key)}, []string{id, strconv.FormatInt(ttl.Milliseconds(), 10)}).AsInt64()
	if err != nil {
		if ctx.Err() == nil { // not the caller leaving
			lock.ReportNodeError(ctx, 0, n.addr, err)
		}
		return false
	}
	return queued == 0
}
