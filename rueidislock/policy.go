package rueidislock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

// ErrEvictionPolicy is matched by the error of New and Dial when a node's
// maxmemory-policy may evict keys. A node that evicts a lock key under
// memory pressure lets a second holder in, as a node that lost its data
// does; one under an allkeys-* policy also evicts fencing counters, and
// tokens go back. Only noeviction keeps every key.
var ErrEvictionPolicy = errors.New("rueidislock: maxmemory-policy may evict keys")

// safePolicy is the only maxmemory-policy under which Redis never evicts a
// key: when memory runs out, writes fail instead.
const safePolicy = "noeviction"

// policyTimeout bounds, at construction, the wait for one node's
// maxmemory-policy. A node that does not answer within it is taken for
// down, and is not checked.
const policyTimeout = time.Second

// WithoutEvictionCheck makes New and Dial skip reading the nodes'
// maxmemory-policy, and so accept nodes that may evict keys. Use it where the
// operator guarantees noeviction by other means and the ACL user may not run
// CONFIG GET (each construction then logs one denial per node in ACL LOG),
// or where losing exclusion and token order under memory pressure is
// accepted. Default: the policy is checked.
func WithoutEvictionCheck() Option {
	return func(c *config) { c.noEvictionCheck = true }
}

// checkPolicies reads maxmemory-policy once on every server behind nodes,
// all at once, and returns an error naming each that may evict keys, which
// matches ErrEvictionPolicy and lock.ErrInvalid. Servers that cannot be
// asked are not checked: those that do not answer (down at construction;
// they are never checked later), and those that refuse CONFIG GET (an ACL
// user without the right, a managed Redis that renamed CONFIG). The package
// documentation states the requirement for them. skip lists nodes known to
// be down, which are not asked.
func checkPolicies(nodes []node, skip []bool) error {
	type policy struct {
		node   int
		server string // the server's address, within a Cluster node
		name   string
	}
	var (
		mu    sync.Mutex
		found []policy
		wg    sync.WaitGroup
	)
	for i, n := range nodes {
		if skip != nil && skip[i] || n.client == nil {
			continue
		}
		for server, c := range n.client.Nodes() {
			wg.Go(func() {
				name, ok := readPolicy(c)
				if ok && name != safePolicy {
					mu.Lock()
					found = append(found, policy{node: i, server: server, name: name})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(found) == 0 {
		return nil
	}
	slices.SortFunc(found, func(a, b policy) int {
		if a.node != b.node {
			return a.node - b.node
		}
		return strings.Compare(a.server, b.server)
	})
	names := make([]string, 0, len(found))
	for _, p := range found {
		if !slices.Contains(names, p.name) {
			names = append(names, p.name)
		}
	}
	errs := []error{lock.Invalid("maxmemory-policy", strings.Join(names, ","), "may evict lock keys; only noeviction is safe")}
	for _, p := range found {
		where := ""
		if p.server != nodes[p.node].addr {
			where = " on " + p.server // a server of a Cluster or Sentinel node
		}
		err := fmt.Errorf("%w: it is %s%s; set it to noeviction, or accept eviction with WithoutEvictionCheck", ErrEvictionPolicy, p.name, where)
		errs = append(errs, &NodeError{Node: p.node, Addr: nodes[p.node].addr, Err: err})
	}
	return errors.Join(errs...)
}

// readPolicy returns c's maxmemory-policy, and false if c does not say:
// it is down, too slow, or refuses CONFIG GET.
func readPolicy(c rueidis.Client) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), policyTimeout)
	defer cancel()
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
	if err != nil {
		return "", false
	}
	name, ok := m["maxmemory-policy"]
	return name, ok && name != ""
}
