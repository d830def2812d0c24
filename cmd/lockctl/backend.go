package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// backendFlags are the flags that choose and configure a backend. Every
// subcommand that needs a lock registers them on its FlagSet, so that a new
// backend, with flags of its own, serves all of them.
type backendFlags struct {
	name string // -backend
}

// register adds the backend flags to fs.
func (f *backendFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "backend", "memory", "lock backend: "+strings.Join(backendNames(), ", "))
}

// opener makes the Backend that backendFlags.open puts a Mutex in front of.
type opener func(f *backendFlags) (lock.Backend, error)

// backends maps the values of -backend to their openers.
var backends = map[string]opener{
	"memory": openMemory,
}

func backendNames() []string {
	names := make([]string, 0, len(backends))
	for name := range backends {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// check reports a bad backend flag as a usage error naming it, before any
// backend is opened.
func (f *backendFlags) check() error {
	if _, ok := backends[f.name]; !ok {
		return usageErrorf("invalid -backend %q: unknown backend (known: %s)", f.name, strings.Join(backendNames(), ", "))
	}
	return nil
}

// open returns a Mutex over the backend the flags choose, with opts as the
// defaults of its calls. The caller closes it, which closes the backend.
func (f *backendFlags) open(opts ...lock.Option) (*lock.Mutex, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	b, err := backends[f.name](f)
	if err != nil {
		return nil, fmt.Errorf("open %s backend: %w", f.name, err)
	}
	return lock.New(b, opts...), nil
}

func openMemory(*backendFlags) (lock.Backend, error) {
	return memory.New(), nil
}
