package lockconfig

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/leaselock/lock"
)

// The backend types, the values of Config.Type. They are the seed's names.
const (
	// TypeMemory selects the in-process backend, package memory.
	TypeMemory = "inMemory"
	// TypeRedis selects the Redis majority backend, package rueidislock.
	TypeRedis = "redis"
)

// DefaultPort is the port of a node given without one.
const DefaultPort = 6379

// A Config says which backend to lock in and with which settings. Parse and
// FromEnv make one from the seed's JSON; a program may also fill one by hand.
//
// Every field left at its zero value (nil for the pointers) leaves the
// setting to the options given to Open, or else to the default of package
// lock or rueidislock. A Config is not changed by its methods, and may be
// used by several goroutines at once.
type Config struct {
	// Type is TypeMemory or TypeRedis.
	Type string

	// Namespace is the namespace of AcquireNS (lock.WithNamespace).
	Namespace string

	// Nodes are the independent Redis nodes of TypeRedis, at least one;
	// a lock is held while a majority of them agree.
	Nodes []Node

	// NodeTimeout bounds each call to one Redis node
	// (rueidislock.WithNodeTimeout). Zero: rueidislock.DefaultNodeTimeout.
	NodeTimeout time.Duration

	// TTL is the life of a lease without renewal (lock.WithTTL).
	// Zero: lock.DefaultTTL.
	TTL time.Duration

	// Retry is the number of attempts after the first, negative for
	// "until the context is done" (lock.WithRetry).
	Retry *int

	// Delay is the wait between attempts (lock.WithDelay).
	Delay *time.Duration

	// Jitter is the largest random time added to each wait
	// (lock.WithJitter).
	Jitter *time.Duration

	// DriftFactor is the share of the TTL assumed lost to clock drift, in
	// [0, 1) (lock.WithDriftFactor).
	DriftFactor *float64

	// AutoExtend is whether leases renew themselves (lock.WithAutoExtend).
	AutoExtend *bool

	// where maps a canonical field name, such as "lockOptions.retryDelay",
	// to the path it was read from, such as "lockConfig.delay", so that
	// errors found after parsing name what the user wrote.
	where map[string]string
}

// A Node is one Redis node.
type Node struct {
	// Host is the node's host name or IP address.
	Host string
	// Port is its port; zero means DefaultPort.
	Port int
	// Username is the ACL user to log in as; empty for the default user.
	Username string
	// Password logs in; empty for no AUTH. Errors and Config.String never
	// show it.
	Password string
	// DB is the database to SELECT.
	DB int
	// TLS, if not nil, makes the connection use TLS.
	TLS *TLS

	// path is where the node was read from, such as "lockConfig.nodes[1]".
	path string
}

// TLS configures the TLS connection to a node. Certificate verification
// cannot be turned off.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities that the node's
	// certificate must chain to. Empty: the system's.
	CAFile string
	// CertFile and KeyFile are PEM files of a client certificate and its
	// key, for nodes that ask for one (tls-auth-clients). Give both or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the node's certificate must hold. Empty: the
	// node's Host.
	ServerName string
}

// addr returns the node's "host:port".
func (n *Node) addr() string {
	port := n.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(n.Host, fmt.Sprint(port))
}

// name returns the path of field in c for an error: where it was read from
// if c was parsed, else its canonical name.
func (c *Config) name(field string) string {
	if p, ok := c.where[field]; ok {
		return p
	}
	return field
}

// nodePath returns the path of node i of c.
func (c *Config) nodePath(i int) string {
	if p := c.Nodes[i].path; p != "" {
		return p
	}
	return fmt.Sprintf("nodes[%d]", i)
}

// check reports the first bad field of c, for a Config filled by hand; one
// made by Parse passes it. Errors match lock.ErrInvalid.
func (c *Config) check() error {
	switch c.Type {
	case TypeMemory:
		if len(c.Nodes) > 0 {
			return lock.Invalid(c.nodePath(0), quote(c.Nodes[0].addr()), onlyRedis)
		}
		if c.NodeTimeout != 0 {
			return lock.Invalid(c.name("nodeTimeout"), c.NodeTimeout, onlyRedis)
		}
	case TypeRedis:
		if len(c.Nodes) == 0 {
			return lock.Invalid(c.name("nodes"), "[]", `type "redis" needs at least one node`)
		}
	default:
		return lock.Invalid(c.name("type"), quote(c.Type), wantType)
	}
	if len(c.Namespace) >= lock.MaxKeyLen {
		return lock.Invalid(c.name("namespace"), fmt.Sprintf("(%d bytes)", len(c.Namespace)),
			fmt.Sprintf("must be shorter than %d bytes, the longest key", lock.MaxKeyLen))
	}
	seen := make(map[string]int, len(c.Nodes))
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if err := n.check(c.nodePath(i)); err != nil {
			return err
		}
		a := strings.ToLower(n.addr())
		if j, dup := seen[a]; dup {
			return lock.Invalid(c.nodePath(i), quote(n.addr()), "is the node of "+c.nodePath(j)+" again")
		}
		seen[a] = i
	}
	return c.checkSettings()
}

// checkSettings checks the lock settings of c.
func (c *Config) checkSettings() error {
	switch {
	case c.NodeTimeout < 0:
		return lock.Invalid(c.name("nodeTimeout"), c.NodeTimeout, "must not be negative")
	case c.TTL < 0:
		return lock.Invalid(c.name("ttl"), c.TTL, "must not be negative")
	case c.TTL > lock.MaxTTL:
		return lock.Invalid(c.name("ttl"), c.TTL, fmt.Sprintf("must be at most %v", lock.MaxTTL))
	case c.Delay != nil && *c.Delay < 0:
		return lock.Invalid(c.name("lockOptions.retryDelay"), *c.Delay, "must not be negative")
	case c.Jitter != nil && *c.Jitter < 0:
		return lock.Invalid(c.name("lockOptions.retryJitter"), *c.Jitter, "must not be negative")
	case c.DriftFactor != nil && !(*c.DriftFactor >= 0 && *c.DriftFactor < 1):
		return lock.Invalid(c.name("lockOptions.driftFactor"), *c.DriftFactor, "must be in [0, 1)")
	}
	// Package lock refuses to retry without a pause, but only at the first
	// Acquire and naming its options; say it now, naming the config field.
	if c.Delay != nil && *c.Delay == 0 && c.Jitter != nil && *c.Jitter == 0 && (c.Retry == nil || *c.Retry != 0) {
		return lock.Invalid(c.name("lockOptions.retryDelay"), 0, "with no jitter would retry without pause")
	}
	return nil
}

// check reports the first bad field of n, read from path.
func (n *Node) check(path string) error {
	if err := checkHost(n.Host); err != nil {
		return lock.Invalid(path+".host", quote(n.Host), err.Error())
	}
	if n.Port < 0 || n.Port > 65535 {
		return lock.Invalid(path+".port", n.Port, "must be in 1..65535")
	}
	if n.DB < 0 {
		return lock.Invalid(path+".db", n.DB, "must not be negative")
	}
	if t := n.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return lock.Invalid(path+".tls.certFile", none, "is needed with keyFile")
		}
		return lock.Invalid(path+".tls.keyFile", none, "is needed with certFile")
	}
	return nil
}

// checkHost rejects host names that cannot be dialled, or that hold what
// looks like a URL's user part.
func checkHost(h string) error {
	if h == "" {
		return errMissing
	}
	if strings.ContainsAny(h, "/@[] \t\r\n") {
		return errBadHost
	}
	// A colon belongs to IPv6 addresses only: "redis:6379" is a host with
	// its port, which goes in "port".
	if addr, _, _ := strings.Cut(h, "%"); strings.Contains(h, ":") && net.ParseIP(addr) == nil {
		return errBadHost
	}
	return nil
}

// Reasons shared by several errors.
const (
	onlyRedis = `only for type "redis"`
	wantType  = `must be "inMemory" or "redis"`
)
