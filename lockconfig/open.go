package lockconfig

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
	"github.com/leaselock/lock/rueidislock"
)

// OpenEnv opens a Mutex from the LOCK_CONFIG environment variable: the
// one call a service needs, as Open describes. It returns an error
// matching ErrNotSet if the variable is unset or empty.
func OpenEnv(namespace string, opts ...lock.Option) (*lock.Mutex, error) {
	c, err := FromEnv()
	if err != nil {
		return nil, err
	}
	return c.Open(namespace, opts...)
}

// Open parses data as Parse does and opens a Mutex from it, as
// Config.Open does.
func Open(data []byte, namespace string, opts ...lock.Option) (*lock.Mutex, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return c.Open(namespace, opts...)
}

// Open returns a Mutex over a new backend made by c.Backend. Closing the
// Mutex closes the backend and its connections.
//
// The Mutex's defaults are opts, then the settings of c, then the
// namespace: the config a deployment gives wins over the program's
// defaults, and options passed to each call win over both. An empty
// namespace leaves c's Namespace, if any.
func (c *Config) Open(namespace string, opts ...lock.Option) (*lock.Mutex, error) {
	b, err := c.Backend()
	if err != nil {
		return nil, err
	}
	all := append(opts[:len(opts):len(opts)], c.Options()...)
	if namespace != "" {
		all = append(all, lock.WithNamespace(namespace))
	}
	return lock.New(b, all...), nil
}

// Options returns the lock options that c sets, for lock.New or for one
// call: one for each field of c that is set.
func (c *Config) Options() []lock.Option {
	if c == nil {
		return nil
	}
	var opts []lock.Option
	if c.Namespace != "" {
		opts = append(opts, lock.WithNamespace(c.Namespace))
	}
	if c.TTL != 0 {
		opts = append(opts, lock.WithTTL(c.TTL))
	}
	if c.Retry != nil {
		opts = append(opts, lock.WithRetry(*c.Retry))
	}
	if c.Delay != nil {
		opts = append(opts, lock.WithDelay(*c.Delay))
	}
	if c.Jitter != nil {
		opts = append(opts, lock.WithJitter(*c.Jitter))
	}
	if c.DriftFactor != nil {
		opts = append(opts, lock.WithDriftFactor(*c.DriftFactor))
	}
	if c.AutoExtend != nil {
		opts = append(opts, lock.WithAutoExtend(*c.AutoExtend))
	}
	return opts
}

// Backend returns a new backend as c says: a memory.Backend, or a
// rueidislock.Backend that dials c.Nodes and owns its connections. It
// reads the TLS files here. Like rueidislock.Dial, it succeeds while nodes
// are down, but fails at once when a node that is up refuses the
// credentials. The caller must close the backend, which lock.New's Mutex
// does on Close.
func (c *Config) Backend() (lock.Backend, error) {
	if c == nil {
		return nil, lock.Invalid("config", "nil", "must not be nil")
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.Type == TypeMemory {
		return memory.New(), nil
	}

	// Dial is given plain "host:port" addresses, never a URL: the
	// credentials, database and TLS of each node are set in its client
	// options, found by address, so no secret passes through an address
	// that an error may quote.
	addrs := make([]string, len(c.Nodes))
	tlsConfigs := make([]*tls.Config, len(c.Nodes))
	index := make(map[string]int, len(c.Nodes))
	for i := range c.Nodes {
		n := &c.Nodes[i]
		addrs[i] = n.addr()
		index[addrs[i]] = i
		if n.TLS != nil {
			var err error
			if tlsConfigs[i], err = n.TLS.config(n.Host, c.nodePath(i)); err != nil {
				return nil, err
			}
		}
	}
	setup := func(o *rueidis.ClientOption) {
		i, ok := index[strings.Join(o.InitAddress, ",")]
		if !ok {
			return
		}
		n := &c.Nodes[i]
		o.Username, o.Password, o.SelectDB = n.Username, n.Password, n.DB
		o.TLSConfig = tlsConfigs[i]
	}
	opts := []rueidislock.Option{rueidislock.WithClientOption(setup)}
	if c.NodeTimeout != 0 {
		opts = append(opts, rueidislock.WithNodeTimeout(c.NodeTimeout))
	}
	b, err := rueidislock.Dial(addrs, opts...)
	if err != nil {
		return nil, c.renameDialError(err)
	}
	return b, nil
}

// renameDialError turns Dial's "addrs[i]" into the path of node i, so that
// a refused password names the node as the config wrote it.
func (c *Config) renameDialError(err error) error {
	var ae *lock.ArgError
	if !errors.As(err, &ae) {
		return err
	}
	i, perr := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(ae.Arg, "addrs["), "]"))
	if perr != nil || i < 0 || i >= len(c.Nodes) {
		return err
	}
	return &lock.ArgError{Arg: c.nodePath(i), Value: ae.Value, Reason: ae.Reason}
}
