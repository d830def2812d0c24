package rueidislock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

// DefaultNodeTimeout bounds each call to one node. It is small next to any
// useful TTL, so that a dead or frozen node costs an attempt little.
const DefaultNodeTimeout = 50 * time.Millisecond

// DefaultDialTimeout bounds, for Dial, each connection to a node and its
// handshake: a node that is frozen, or behind a firewall that drops
// packets, holds Dial that long. rueidis's own default is 5 s; set another
// with WithClientOption (the rueidis.ClientOption's Dialer.Timeout).
const DefaultDialTimeout = time.Second

// DefaultFlushDelay, times the number of nodes, is the
// rueidis.ClientOption's MaxFlushDelay of the clients Dial makes: how long
// a connection gathers more calls before it writes, while several are
// waiting. Set another with WithClientOption.
//
// It grows with the nodes because every attempt writes to each of them:
// the more nodes, the more writes an Acquire costs its client, and the
// fewer calls per second each connection sees to gather into one write.
const DefaultFlushDelay = 20 * time.Microsecond

// A Backend keeps locks on N independent Redis nodes and holds a lock only
// while a majority of them, N/2+1, agree. Create it with New or Dial and pass
// it to lock.New. It is safe for concurrent use.
type Backend struct {
	nodes    []node
	allNodes []int // 0, 1, ... len(nodes)-1
	quorum   int
	timeout  time.Duration
	owned    bool // made by Dial: Close closes the clients
	closed   atomic.Bool
	closing  sync.RWMutex   // held by Close while it sets closed
	calls    sync.WaitGroup // calls under way, for Close to wait for (see enter)
	notes    notifier       // wakes waiters on releases

	quarantine quarantined
	knobs      knobs // test seams and negative controls: zero in production

	// clock is what validity is measured on: package time, except in
	// tests of clocks that run slow or jump (see clock.go).
	clock clock

	// proposalClock, if set (by tests), gives the fencing proposals' time:
	// a client whose clock is behind or ahead.
	proposalClock func() time.Time
	ctx           context.Context // of background work (repairs); done at Close
	stop          context.CancelFunc

	// id and releases name each release in its announcement: id tells
	// this Backend's releases from other processes'.
	id       string
	releases atomic.Uint64

	// ownWaiters ends the channels of this process's waiters of a key:
	// releasedChannel(key) + ownWaiters is their channel (see waitersMark).
	ownWaiters string
}

var _ lock.Backend = (*Backend)(nil)

// node is one Redis node: a client and the address to name in errors.
type node struct {
	client rueidis.Client
	addr   string
}

// An Option configures a Backend.
type Option func(*config)

type config struct {
	timeout    time.Duration
	quarantine time.Duration
	client     func(*rueidis.ClientOption)
	// noEvictionCheck skips reading the nodes' maxmemory-policy.
	noEvictionCheck bool
}

// WithNodeTimeout bounds each call to one node of an attempt or an
// extension; a release waits four times as long, since one that times out
// leaves the key until its TTL. A lease's TTL must leave room for two node
// timeouts after the drift. Default: DefaultNodeTimeout.
func WithNodeTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithClientOption lets Dial adjust the rueidis.ClientOption of every node
// before it connects: credentials, TLS, timeouts. New ignores it.
func WithClientOption(f func(*rueidis.ClientOption)) Option {
	return func(c *config) { c.client = f }
}

func newConfig(opts []Option) (config, error) {
	c := config{timeout: DefaultNodeTimeout}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.timeout <= 0 {
		return c, lock.Invalid("WithNodeTimeout", c.timeout, "must be positive")
	}
	if c.quarantine < 0 {
		return c, lock.Invalid("WithQuarantine", c.quarantine, "must not be negative")
	}
	return c, nil
}

// New returns a Backend over clients, one per independent Redis node; each
// may be a standalone, Sentinel or Cluster client, built with whatever
// rueidis options the deployment needs. The caller keeps ownership of the
// clients: Close does not close them.
//
// Every client must reach a different node. An even number of nodes is
// allowed, but tolerates no more failures than one node fewer.
//
// Dial's clients use one connection per node and a MaxFlushDelay of
// DefaultFlushDelay times the number of nodes, which serve concurrent locks
// best; clients built for New are used as they are.
//
// New asks every server behind the clients for its maxmemory-policy, once,
// and fails with an error matching ErrEvictionPolicy if one may evict keys;
// see WithoutEvictionCheck. Servers that do not answer within a second, or
// refuse CONFIG GET, are not checked.
func New(clients []rueidis.Client, opts ...Option) (*Backend, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		return nil, lock.Invalid("clients", "[]", "must name at least one node")
	}
	nodes := make([]node, len(clients))
	seen := make(map[string]int)
	for i, client := range clients {
		if client == nil {
			return nil, lock.Invalid(fmt.Sprintf("clients[%d]", i), "nil", "must not be nil")
		}
		nodes[i] = node{client: client, addr: fmt.Sprintf("node %d", i)}
		addrs := make([]string, 0, 1)
		for addr := range client.Nodes() {
			addrs = append(addrs, addr)
		}
		slices.Sort(addrs)
		if len(addrs) > 0 {
			nodes[i].addr = strings.Join(addrs, ",")
		}
		for _, addr := range addrs {
			if j, dup := seen[addr]; dup {
				return nil, lock.Invalid(fmt.Sprintf("clients[%d]", i), addr, fmt.Sprintf("reaches the same node as clients[%d]", j))
			}
			seen[addr] = i
		}
		for j := range i {
			if clients[j] == client {
				return nil, lock.Invalid(fmt.Sprintf("clients[%d]", i), nodes[i].addr, fmt.Sprintf("is clients[%d] again", j))
			}
		}
	}
	if c.quarantine > 0 {
		for i, client := range clients {
			if client.Mode() == rueidis.ClientModeCluster {
				return nil, lock.Invalid(fmt.Sprintf("clients[%d]", i), nodes[i].addr, "is a Redis Cluster: WithQuarantine needs standalone or Sentinel nodes (make cluster nodes keep their data instead)")
			}
		}
	}
	if !c.noEvictionCheck {
		if err := checkPolicies(nodes, nil); err != nil {
			return nil, err
		}
	}
	return newBackend(nodes, c, false), nil
}

func newBackend(nodes []node, c config, owned bool) *Backend {
	b := &Backend{nodes: nodes, quorum: len(nodes)/2 + 1, timeout: c.timeout, owned: owned, id: newValue()[:16], clock: systemClock{}}
	b.ownWaiters = waitersMark + b.id
	b.ctx, b.stop = context.WithCancel(context.Background())
	if c.quarantine > 0 {
		b.quarantine = quarantined{after: c.quarantine, repairing: make([]atomic.Bool, len(nodes))}
	}
	b.allNodes = make([]int, len(nodes))
	for i := range b.allNodes {
		b.allNodes[i] = i
	}
	return b
}

// Dial returns a Backend over the nodes at addrs, each "host:port" or a
// "redis://" or "rediss://" URL (with user, password and database), each
// an independent Redis node. It owns the clients it makes: Close closes
// them. Dial succeeds while nodes are down; a node that cannot be reached
// counts as a refusal until it can. Like New, Dial checks the nodes'
// maxmemory-policy, on the nodes it reached.
func Dial(addrs []string, opts ...Option) (*Backend, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, lock.Invalid("addrs", "[]", "must name at least one node")
	}
	options := make([]rueidis.ClientOption, len(addrs))
	seen := make(map[string]int)
	for i, addr := range addrs {
		opt, err := parseAddr(addr)
		if err != nil {
			return nil, lock.Invalid(fmt.Sprintf("addrs[%d]", i), redact(addr), err.Error())
		}
		// Each address is one node, even if it answers as a cluster member,
		// and client-side caching is of no use to a lock.
		opt.ForceSingleClient = true
		opt.DisableCache = true
		opt.Dialer.Timeout = DefaultDialTimeout
		// One connection per node, which waits up to DefaultFlushDelay
		// per node before each write while other calls are waiting: lock
		// calls are small, and the system calls that send them cost a
		// client more than the rest of its work. Gathering the calls of
		// concurrent locks into fewer, larger writes makes them faster on
		// the whole (see the README's table); a lone call is never
		// delayed.
		opt.PipelineMultiplex = -1
		opt.MaxFlushDelay = DefaultFlushDelay * time.Duration(len(addrs))
		if c.client != nil {
			c.client(&opt)
		}
		target := strings.Join(opt.InitAddress, ",")
		if j, dup := seen[target]; dup {
			return nil, lock.Invalid(fmt.Sprintf("addrs[%d]", i), redact(addr), fmt.Sprintf("is the node of addrs[%d] again", j))
		}
		seen[target] = i
		options[i] = opt
	}
	b := newBackend(make([]node, len(addrs)), c, true)
	// Connect to every node at once: a node that does not answer holds
	// its NewClient for the dial timeout, and should not add it to the
	// others'.
	clients := make([]rueidis.Client, len(options))
	errs := make([]error, len(options))
	var wg sync.WaitGroup
	for i, opt := range options {
		wg.Go(func() { clients[i], errs[i] = rueidis.NewClient(opt) })
	}
	wg.Wait()
	for i, client := range clients {
		if client != nil {
			b.nodes[i] = node{client: client, addr: strings.Join(options[i].InitAddress, ",")}
		}
	}
	for i, client := range clients {
		if client == nil {
			// A configuration error, not a node that is down.
			b.closeClients()
			return nil, fmt.Errorf("rueidislock: addrs[%d] %s: %w", i, redact(addrs[i]), errs[i])
		}
		if rerr, refused := rueidis.IsRedisErr(errs[i]); refused {
			// The node is up and refused the handshake (WRONGPASS, NOAUTH):
			// no retry will cure that.
			b.closeClients()
			return nil, lock.Invalid(fmt.Sprintf("addrs[%d]", i), redact(addrs[i]), "the node refused the connection: "+rerr.Error())
		}
	}
	if !c.noEvictionCheck {
		// Nodes that did not answer the dial are down: not asked.
		down := make([]bool, len(errs))
		for i, err := range errs {
			down[i] = err != nil
		}
		if err := checkPolicies(b.nodes, down); err != nil {
			b.stop()
			b.closeClients()
			return nil, err
		}
	}
	return b, nil
}

// parseAddr turns a "host:port" or URL into client options.
func parseAddr(addr string) (rueidis.ClientOption, error) {
	if strings.HasPrefix(addr, "redis://") || strings.HasPrefix(addr, "rediss://") || strings.HasPrefix(addr, "unix://") {
		opt, err := rueidis.ParseURL(addr)
		if err != nil {
			// The error may quote the URL, password included: say less.
			return opt, errors.New("not a valid Redis URL")
		}
		return opt, nil
	}
	if addr == "" || strings.Contains(addr, "://") || !strings.Contains(addr, ":") {
		return rueidis.ClientOption{}, errors.New(`must be "host:port" or a redis:// or rediss:// URL`)
	}
	return rueidis.ClientOption{InitAddress: []string{addr}}, nil
}

// redact hides the password of a URL for an error message.
func redact(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.User == nil {
		if strings.Contains(addr, "@") {
			return "(address not shown: it may hold a password)"
		}
		return addr
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Close makes later calls fail with lock.ErrClosed, ends the waits under
// way, waits for the calls under way (each within a few node timeouts),
// takes the Backend's waiters out of the queues of a single node, freeing
// a key handed over to one of them, and, for a Backend made by Dial,
// closes its clients. It is idempotent.
func (b *Backend) Close() error {
	b.closing.Lock()
	first := b.closed.CompareAndSwap(false, true)
	b.closing.Unlock()
	if !first {
		return nil
	}
	// Node calls that outlived their caller (those to slow nodes, once a
	// majority had answered) end within the node timeout; repairs stop.
	b.stop()
	// Wake every waiter: no call can start now, and those under way end
	// within the node timeout, which Close waits for. The waiters they
	// leave in the queue on a single node, Close then takes out.
	b.notes.close()
	b.calls.Wait()
	b.notes.closeConns()
	if len(b.nodes) == 1 {
		b.leaveQueues()
	}
	if b.owned {
		b.closeClients()
	}
	return nil
}

// enter counts n calls that may use the clients as under way, so that
// Close waits for them before it closes the clients, and reports true;
// once Close began it counts nothing and reports false. Each call counted
// ends with b.calls.Done.
func (b *Backend) enter(n int) bool {
	b.closing.RLock()
	defer b.closing.RUnlock()
	if b.closed.Load() {
		return false
	}
	b.calls.Add(n)
	return true
}

func (b *Backend) closeClients() {
	for _, n := range b.nodes {
		if n.client != nil {
			n.client.Close()
		}
	}
}

// Nodes returns the number of nodes, and Quorum how many must agree.
func (b *Backend) Nodes() int { return len(b.nodes) }

// Quorum returns how many nodes must agree to grant, extend or keep a lock:
// a majority, N/2+1.
func (b *Backend) Quorum() int { return b.quorum }

// newValue returns a lock value: 128 bits from crypto/rand, in hex. Whoever
// knows it can release the lock, so it never appears in errors or logs.
func newValue() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24.
	return hex.EncodeToString(b[:])
}

// releaseName returns a name for a release, unique to it, to announce it
// with. It is not the lock value, which must stay secret.
func (b *Backend) releaseName() string {
	return b.id + strconv.FormatUint(b.releases.Add(1), 36)
}

// A NodeError is what one node answered, or failed to answer, to a call.
// Errors of a Backend join one per node that failed, so that errors.As
// finds them.
type NodeError struct {
	Node int    // the index of the node, in the order given to New or Dial
	Addr string // its address
	Err  error
}

// Error returns "rueidislock: node N (addr): err".
func (e *NodeError) Error() string {
	return fmt.Sprintf("rueidislock: node %d (%s): %v", e.Node, e.Addr, e.Err)
}

// Unwrap returns e.Err.
func (e *NodeError) Unwrap() error { return e.Err }
