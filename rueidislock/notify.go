package rueidislock

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

var _ lock.Waiter = (*Backend)(nil)

// notifier wakes waiters when a key is released. The release script
// publishes on the key's channel on every node it frees; the notifier keeps
// one subscribing connection per node, made on first need, and subscribes
// to a key's channel while someone waits for that key. A node whose
// connection fails only stops waking waiters early: they still wake at the
// holder's TTL or the retry delay.
type notifier struct {
	mu      sync.Mutex
	conns   []*subConn        // per node; nil until needed or after a failure
	watches map[string]*watch // by channel
	closed  bool
}

// subConn is one node's subscribing connection.
type subConn struct {
	client rueidis.DedicatedClient
	cancel func() // gives the connection back to the client's pool
	dead   <-chan error
}

// watch is the interest of waiters in one channel. A release wakes one
// waiter, the one that has waited longest, rather than all of them: waiters
// woken together would split the nodes' votes between them and all fail.
type watch struct {
	refs  int
	queue []chan struct{} // waiters not yet woken, oldest first
	ready chan struct{}   // closed once the subscriptions were tried
}

// watch subscribes to channel on every node, unless another waiter already
// did, and returns a channel closed at the next release message, and a func
// to call when done waiting. It returns when the subscriptions stand (or
// failed, each within the node timeout), so that a release after it returns
// is not missed.
func (b *Backend) watch(ctx context.Context, channel string) (<-chan struct{}, func()) {
	n := &b.notes
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, func() {}
	}
	w := n.watches[channel]
	first := w == nil
	if first {
		w = &watch{ready: make(chan struct{})}
		if n.watches == nil {
			n.watches = make(map[string]*watch)
		}
		n.watches[channel] = w
	}
	w.refs++
	wake := make(chan struct{}, 1)
	w.queue = append(w.queue, wake)
	n.mu.Unlock()

	if first {
		b.eachNode(ctx, func(ctx context.Context, i int) {
			if c := b.subConn(i); c != nil {
				// The PING after SUBSCRIBE answers once the server has
				// taken the subscription: replies come in order.
				c.client.Do(ctx, c.client.B().Subscribe().Channel(channel).Build())
				c.client.Do(ctx, c.client.B().Ping().Build())
			}
		})
		close(w.ready)
	} else {
		select {
		case <-w.ready:
		case <-ctx.Done():
		}
	}
	return wake, func() { b.unwatch(channel, w, wake) }
}

// unwatch drops one waiter's interest in channel, and unsubscribes when it
// was the last.
func (b *Backend) unwatch(channel string, w *watch, wake chan struct{}) {
	n := &b.notes
	n.mu.Lock()
	if i := slices.Index(w.queue, wake); i >= 0 {
		w.queue = slices.Delete(w.queue, i, i+1)
	} else if len(wake) > 0 && len(w.queue) > 0 {
		// Woken but leaving without using the wake-up (its attempt won or
		// its context ended): pass it on.
		next := w.queue[0]
		w.queue = w.queue[1:]
		next <- struct{}{}
	}
	w.refs--
	last := w.refs == 0 && n.watches[channel] == w
	if last {
		delete(n.watches, channel)
	}
	n.mu.Unlock()
	if last {
		<-w.ready
		b.eachNode(context.Background(), func(ctx context.Context, i int) {
			if c := b.subConn(i); c != nil {
				c.client.Do(ctx, c.client.B().Unsubscribe().Channel(channel).Build())
			}
		})
	}
}

// onMessage wakes the oldest waiter of the message's channel.
func (n *notifier) onMessage(m rueidis.PubSubMessage) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.watches[m.Channel]; w != nil && len(w.queue) > 0 {
		next := w.queue[0]
		w.queue = w.queue[1:]
		next <- struct{}{}
	}
}

// subConn returns node i's subscribing connection, making it if needed.
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
	if c := n.conns[i]; c != nil {
		select {
		case <-c.dead:
			c.cancel() // failed: make another
		default:
			return c
		}
	}
	client, cancel := subscriber(b.nodes[i].client).Dedicate()
	dead := client.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: n.onMessage})
	n.conns[i] = &subConn{client: client, cancel: cancel, dead: dead}
	return n.conns[i]
}

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

// close gives back every subscribing connection.
func (n *notifier) close() {
	n.mu.Lock()
	conns := n.conns
	n.conns, n.closed = nil, true
	n.mu.Unlock()
	for _, c := range conns {
		if c != nil {
			c.cancel()
		}
	}
}

// eachNode runs f for every node at once, each bounded by the node
// timeout, and returns when all have.
func (b *Backend) eachNode(ctx context.Context, f func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range b.nodes {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, b.timeout)
			defer cancel()
			f(nctx, i)
		})
	}
	wg.Wait()
}

// Wait makes an attempt once it listens for the key's release, then waits
// for the release, the holder's TTL, d, or ctx, whichever comes first. It
// returns the attempt's grant if it got one, and otherwise tells the Mutex
// to try again.
func (b *Backend) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	if err := b.check(&req); err != nil {
		return lock.Result{}, err
	}
	released, done := b.watch(ctx, releasedChannel(req.Key))
	defer done()
	// A release between the caller's last attempt and the subscription
	// would be missed: try once more now that it stands.
	res, err := b.Acquire(ctx, req)
	if err != nil || res.Acquired {
		return res, err
	}
	if res.HolderTTL > 0 && res.HolderTTL < d {
		d = res.HolderTTL
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-released:
	case <-t.C:
	case <-ctx.Done():
	}
	return lock.Result{Owner: res.Owner}, nil
}
