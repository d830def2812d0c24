package rueidislock_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

// startCluster starts a Redis Cluster of three masters, each with a third
// of the slots, and returns their addresses once the cluster is ok.
func startCluster(t *testing.T) []string {
	servers := redistest.StartN(t, 3, redistest.WithArgs(
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
		first, last := i*16384/3, (i+1)*16384/3-1
		if err := s.Do("CLUSTER", "ADDSLOTSRANGE", fmt.Sprint(first), fmt.Sprint(last)).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers[1:] {
		if err := s.Do("CLUSTER", "MEET", "127.0.0.1", fmt.Sprint(servers[0].Port())).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		if !pollUntil(10*time.Second, func() bool {
			info, err := s.Do("CLUSTER", "INFO").ToString()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3")
		}) {
			t.Fatal("cluster not ok within 10s")
		}
	}
	return addrs
}

// TestClusterAsNode runs the conformance suite over three nodes of which
// one is itself a Redis Cluster, as users scale a node past one machine:
// the lock key and its fencing counter share a hash slot, so every script
// runs on one shard.
func TestClusterAsNode(t *testing.T) {
	cluster := startCluster(t)
	_, addrs := startNodes(t, 2)
	newBackend := func(t *testing.T) lock.Backend {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cluster, DisableCache: true, AlwaysPipelining: true})
		if err != nil {
			t.Fatal(err)
		}
		// Connect to every shard now: connections opened on first use
		// would count as new goroutines in the suite's leak checks.
		for addr, n := range c.Nodes() {
			if err := n.Do(context.Background(), n.B().Ping().Build()).Error(); err != nil {
				t.Fatalf("PING %s: %v", addr, err)
			}
		}
		clients := []rueidis.Client{c}
		for _, addr := range addrs {
			s, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, AlwaysPipelining: true})
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, s)
		}
		b, err := rueidislock.New(clients, rueidislock.WithNodeTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return closing{b, clients}
	}
	// Keys of every shape land on every shard of the cluster.
	b := newBackend(t)
	m := lock.New(b)
	for _, key := range []string{"a", "b", "c", "{user1}:job", "x}y", "p{q", "orders:42"} {
		l, err := m.TryAcquire(context.Background(), key)
		if err != nil {
			t.Fatalf("TryAcquire(%q) with a cluster node: %v", key, err)
		}
		l.Release(context.Background())
	}
	m.Close()
	locktest.Run(t, newBackend, locktest.WithPolling(), locktest.WithTTL(500*time.Millisecond))
}

// closing is a Backend over clients the test built, which it closes after
// the Backend, as their owner does: New leaves them open, and the subscribing
// connections it gave back to their pools live as long as they do.
type closing struct {
	*rueidislock.Backend
	clients []rueidis.Client
}

func (c closing) Close() error {
	err := c.Backend.Close()
	for _, client := range c.clients {
		client.Close()
	}
	return err
}
