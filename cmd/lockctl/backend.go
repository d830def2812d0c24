package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockconfig"
	"github.com/leaselock/lock/memory"
	"github.com/leaselock/lock/rueidislock"
)

// The kinds of backend that -backend names and that a config selects.
const (
	kindMemory = "memory"
	kindRedis  = "redis"
)

// Where a backend's settings came from, for messages and reports.
const (
	sourceRedisFlag = "-redis"
	sourceEnv       = lockconfig.EnvVar
	sourceDefault   = "default"
)

// backendFlags are the flags that choose and configure a backend. Every
// subcommand that needs a lock registers them on its FlagSet, so that all of
// them choose a backend the same way:
//
//  1. -redis addresses: a Redis backend over those nodes, with the
//     defaults of every other setting;
//  2. else -config FILE: the config in that file (LOCK_CONFIG's format);
//  3. else the LOCK_CONFIG environment variable;
//  4. else the memory backend.
//
// -backend memory forces the memory backend over LOCK_CONFIG, and -backend
// redis insists on one of the first three. The first source found is the
// only one read: an explicit flag never depends on a LOCK_CONFIG that
// happens to be in the environment, broken or not.
type backendFlags struct {
	name        string        // -backend; "" picks by the other flags
	redis       addrList      // -redis
	config      string        // -config
	nodeTimeout time.Duration // -node-timeout; 0 leaves the config's

	// getenv reads the environment; nil means os.Getenv. Tests set it.
	getenv func(string) string

	// Set by resolve.
	kind   string             // kindMemory, kindRedis, or a name in backends
	source string             // where cfg came from: "-redis", "-config FILE", ...
	cfg    *lockconfig.Config // nil for the memory default and test backends
}

// addrList is the value of -redis: addresses, given in one flag separated by
// commas, in repeated flags, or both.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(s string) error {
	for addr := range strings.SplitSeq(s, ",") {
		if addr = strings.TrimSpace(addr); addr != "" {
			*a = append(*a, addr)
		}
	}
	return nil
}

// register adds the backend flags to fs. A nodeTimeout set before is the
// default of -node-timeout.
func (f *backendFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "backend", "", "lock backend: "+strings.Join(backendNames(), " or ")+
		" (default: redis if -redis, -config or LOCK_CONFIG says so, else memory)")
	fs.Var(&f.redis, "redis", "Redis nodes, each `host:port` or a redis:// or rediss:// URL, separated by commas or in repeated flags; a lock is held by a majority of them")
	fs.StringVar(&f.config, "config", "", "read the backend's config from `file`, a JSON value in the format of the LOCK_CONFIG environment variable")
	usage := "bound each call to one Redis node (default: the config's nodeTimeout, else " + rueidislock.DefaultNodeTimeout.String() + ")"
	if f.nodeTimeout != 0 {
		// The command has a default of its own, which wins over the config's.
		usage = "bound each call to one Redis node"
	}
	fs.DurationVar(&f.nodeTimeout, "node-timeout", f.nodeTimeout, usage)
}

// opener makes the Backend of a -backend name that no config describes:
// the test backends.
type opener func(f *backendFlags) (lock.Backend, error)

// backends maps the names -backend accepts to their openers. The openers of
// memory and redis are not used: those backends are opened from their
// config. Tests add backends of their own.
var backends = map[string]opener{
	kindMemory: nil,
	kindRedis:  nil,
}

func backendNames() []string {
	names := make([]string, 0, len(backends))
	for name := range backends {
		if !strings.HasPrefix(name, "test-") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// resolve chooses the backend and reads its config, as backendFlags says.
// Its errors are usage errors naming the flag or variable at fault.
func (f *backendFlags) resolve() error {
	if _, ok := backends[f.name]; !ok && f.name != "" {
		return usageErrorf("invalid -backend %q: unknown backend (known: %s)", f.name, strings.Join(backendNames(), ", "))
	}
	if len(f.redis) > 0 && f.config != "" {
		return usageErrorf("-redis and -config both name the backend: give one of them")
	}
	if open := backends[f.name]; open != nil {
		if len(f.redis) > 0 || f.config != "" {
			return usageErrorf("-backend %s takes neither -redis nor -config", f.name)
		}
		f.kind, f.source = f.name, "-backend"
		return nil
	}
	if f.name == kindMemory && (len(f.redis) > 0 || f.config != "") {
		return usageErrorf("-backend memory takes neither -redis nor -config")
	}

	var err error
	switch {
	case len(f.redis) > 0:
		f.cfg, err = redisConfig(f.redis)
		f.source = sourceRedisFlag
	case f.config != "":
		f.source = "-config " + f.config
		var data []byte
		if data, err = os.ReadFile(f.config); err != nil {
			return usageErrorf("invalid -config: %v", err)
		}
		if f.cfg, err = lockconfig.Parse(data); err != nil {
			err = usageErrorf("invalid -config %s: %v", f.config, err)
		}
	case f.name == kindMemory:
		// Forced: LOCK_CONFIG is not read, so it cannot be in the way.
	default:
		getenv := f.getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if env := getenv(lockconfig.EnvVar); env != "" {
			f.source = sourceEnv
			if f.cfg, err = lockconfig.Parse([]byte(env)); err != nil {
				err = usageErrorf("invalid %s: %v", lockconfig.EnvVar, err)
			}
		}
	}
	if err != nil {
		return err
	}

	switch {
	case f.cfg == nil:
		f.kind = kindMemory
		if f.source == "" {
			f.source = sourceDefault
		}
	case f.cfg.Type == lockconfig.TypeRedis:
		f.kind = kindRedis
	default:
		f.kind = kindMemory
	}
	if f.nodeTimeout < 0 {
		return usageErrorf("invalid -node-timeout %v: must not be negative", f.nodeTimeout)
	}
	if f.nodeTimeout > 0 && f.cfg != nil {
		f.cfg.NodeTimeout = f.nodeTimeout
	}
	if f.name == kindRedis && f.kind != kindRedis {
		return usageErrorf("-backend redis needs Redis nodes: give -redis host:port,..., -config FILE or %s (%s)", lockconfig.EnvVar, f.describe())
	}
	return nil
}

// redisConfig returns the config of a Redis backend over the -redis
// addresses. It goes through lockconfig.Parse, so that the addresses are
// read, checked and kept out of errors exactly as in LOCK_CONFIG.
func redisConfig(addrs []string) (*lockconfig.Config, error) {
	data, err := json.Marshal(map[string]any{"type": lockconfig.TypeRedis, "nodes": addrs})
	if err != nil {
		return nil, err // not reached: strings always marshal
	}
	cfg, err := lockconfig.Parse(data)
	if err == nil {
		return cfg, nil
	}
	// Name a node as -redis counts them, from 1, not by its path in the
	// JSON that no user wrote.
	var ae *lock.ArgError
	if errors.As(err, &ae) && nodePath.FindString(ae.Arg) == ae.Arg {
		// The value lockconfig quotes is redacted already.
		return nil, usageErrorf("invalid -redis %s %s: %s", renameNodes(ae.Arg), ae.Value, renameNodes(ae.Reason))
	}
	return nil, usageErrorf("invalid -redis: %v", renameNodes(err.Error()))
}

// nodePath matches the path lockconfig gives a node of "nodes".
var nodePath = regexp.MustCompile(`nodes\[(\d+)\]`)

// renameNodes rewrites the paths of nodes in s, such as "nodes[0]", as
// "address 1".
func renameNodes(s string) string {
	return nodePath.ReplaceAllStringFunc(s, func(p string) string {
		i, _ := strconv.Atoi(nodePath.FindStringSubmatch(p)[1])
		return "address " + strconv.Itoa(i+1)
	})
}

// describe says which backend the flags chose and why, as in
// "redis, 3 nodes, from LOCK_CONFIG".
func (f *backendFlags) describe() string {
	switch {
	case f.kind == kindRedis:
		return fmt.Sprintf("redis, %d nodes, from %s", len(f.cfg.Nodes), f.source)
	case f.source == sourceDefault:
		return "memory: no -redis, -config or " + lockconfig.EnvVar
	default:
		return f.kind + ", from " + f.source
	}
}

// open returns a Mutex over the backend that resolve chose, with the
// settings of its config and then opts as the defaults of its calls (opts
// win), and the backend. The caller closes the Mutex, which closes the
// backend.
func (f *backendFlags) open(opts ...lock.Option) (*lock.Mutex, lock.Backend, error) {
	if f.kind == "" {
		if err := f.resolve(); err != nil {
			return nil, nil, err
		}
	}
	var (
		b   lock.Backend
		err error
	)
	switch {
	case backends[f.kind] != nil:
		b, err = backends[f.kind](f)
	case f.cfg != nil:
		b, err = f.cfg.Backend()
		opts = append(f.cfg.Options(), opts...)
	default:
		b = memory.New()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s backend (%s): %w", f.kind, f.source, err)
	}
	return lock.New(b, opts...), b, nil
}

// nodes returns the number of nodes of b, or 0 if b does not have several.
func nodes(b lock.Backend) int {
	if rb, ok := b.(*rueidislock.Backend); ok {
		return rb.Nodes()
	}
	return 0
}

// needRedis is the usage error of a command that needs a lock shared
// between processes when the flags chose the memory backend.
func (f *backendFlags) needRedis(cmd string) error {
	return usageErrorf("%s needs a lock shared between processes, but the backend is %s; "+
		"name Redis nodes with -redis host:port[,host:port...], -config FILE, or the %s environment variable, "+
		`such as %s='{"type":"redis","connection":{"host":"127.0.0.1","port":6379}}'`,
		cmd, f.describe(), lockconfig.EnvVar, lockconfig.EnvVar)
}

// namespaceFlag is -namespace: a string that remembers whether it was set,
// so that -namespace= can take away the namespace of a config.
type namespaceFlag struct {
	value string
	set   bool
}

func (n *namespaceFlag) String() string { return n.value }

func (n *namespaceFlag) Set(s string) error {
	n.value, n.set = s, true
	return nil
}

// namespace returns the namespace in effect: -namespace if given, else the
// config's.
func (f *backendFlags) namespace(flag namespaceFlag) string {
	if flag.set || f.cfg == nil {
		return flag.value
	}
	return f.cfg.Namespace
}
