package rueidislock_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/rueidislock"
)

// inspectUntil inspects key on b until cond holds of the states, or 5 s
// passed: a node that answered an Acquire after the majority did may lag a
// little. It returns the last states.
func inspectUntil(t *testing.T, b *rueidislock.Backend, key string, cond func([]rueidislock.NodeState) bool) []rueidislock.NodeState {
	t.Helper()
	var states []rueidislock.NodeState
	ok := pollUntil(5*time.Second, func() bool {
		var err error
		if states, err = b.Inspect(context.Background(), key); err != nil {
			t.Fatalf("Inspect(%q) = %v", key, err)
		}
		return cond(states)
	})
	if !ok {
		t.Fatalf("Inspect(%q): condition not met within 5s; states %+v", key, states)
	}
	return states
}

// holding returns the number of nodes in states that hold the key, and
// fails t if any node answered with an error.
func holding(t *testing.T, states []rueidislock.NodeState) int {
	t.Helper()
	n := 0
	for _, s := range states {
		if s.Err != nil {
			t.Fatalf("node %d: %v", s.Node, s.Err)
		}
		if s.Held {
			n++
		}
	}
	return n
}

func TestInspect(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	b := dial(t, addrs)
	m := lock.New(b, lock.WithTTL(5*time.Second))
	defer m.Close()
	ctx := context.Background()
	const key = "inspect:job"

	// Never held: no holder anywhere, and no counter yet.
	states := inspectUntil(t, b, key, func([]rueidislock.NodeState) bool { return true })
	for i, s := range states {
		if s.Node != i || s.Addr != addrs[i] || s.Held || s.Holder != "" || s.TTL != 0 || s.Fence != 0 || s.Err != nil {
			t.Errorf("node %d before any lock: %+v, want not held, no fence", i, s)
		}
	}
	if h, n := rueidislock.Agreement(states); h != "" || n != 0 {
		t.Errorf("Agreement before any lock = %q, %d; want \"\", 0", h, n)
	}

	l, err := m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	states = inspectUntil(t, b, key, func(s []rueidislock.NodeState) bool { return holding(t, s) == 3 })
	value, err := servers[0].Do("GET", key).ToString()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(value))
	want := hex.EncodeToString(sum[:])[:rueidislock.HolderLen]
	for i, s := range states {
		if s.Holder != want {
			t.Errorf("node %d: Holder = %q, want the start of the SHA-1 of the value, %q", i, s.Holder, want)
		}
		if strings.Contains(value, s.Holder) || strings.Contains(fmt.Sprintf("%+v", s), value) {
			t.Errorf("node %d: the state %+v shows the lock's value", i, s)
		}
		if s.TTL <= 0 || s.TTL > 5*time.Second {
			t.Errorf("node %d: TTL = %v, want in (0, 5s]", i, s.TTL)
		}
		if s.Fence != l.Token() {
			t.Errorf("node %d: Fence = %d, want the token %d", i, s.Fence, l.Token())
		}
	}
	if h, n := rueidislock.Agreement(states); h != want || n != 3 {
		t.Errorf("Agreement = %q, %d; want %q, 3", h, n, want)
	}

	// One node lost the key: two of three still agree, a quorum.
	if err := servers[1].Do("DEL", key).Error(); err != nil {
		t.Fatal(err)
	}
	states = inspectUntil(t, b, key, func([]rueidislock.NodeState) bool { return true })
	if s := states[1]; s.Held || s.Holder != "" || s.TTL != 0 || s.Fence != l.Token() {
		t.Errorf("node 1 after DEL of the key: %+v, want not held, the fence kept", s)
	}
	if h, n := rueidislock.Agreement(states); h != want || n != 2 || n < b.Quorum() {
		t.Errorf("Agreement with one node's key deleted = %q, %d; want %q, 2 (quorum %d)", h, n, want, b.Quorum())
	}

	// Released: held nowhere, and the counters survive the key.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	states = inspectUntil(t, b, key, func(s []rueidislock.NodeState) bool { return holding(t, s) == 0 })
	for i, s := range states {
		if s.Fence != l.Token() {
			t.Errorf("node %d after Release: Fence = %d, want %d", i, s.Fence, l.Token())
		}
	}
	if h, n := rueidislock.Agreement(states); h != "" || n != 0 {
		t.Errorf("Agreement after Release = %q, %d; want \"\", 0", h, n)
	}
}

// TestInspectForeignKeys pins what Inspect shows of keys no lock set: a
// key without expiry has a negative TTL, and two values are two holders.
func TestInspectForeignKeys(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	b := dial(t, addrs)
	for i, v := range []string{"a", "a", "b"} {
		if err := servers[i].Do("SET", "foreign", v).Error(); err != nil {
			t.Fatal(err)
		}
	}
	states, err := b.Inspect(context.Background(), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range states {
		if !s.Held || s.TTL >= 0 || len(s.Holder) != rueidislock.HolderLen || s.Err != nil {
			t.Errorf("node %d: %+v, want held with no expiry", i, s)
		}
	}
	if states[0].Holder != states[1].Holder || states[0].Holder == states[2].Holder {
		t.Errorf("holders %q, %q, %q; want the first two equal, the third not", states[0].Holder, states[1].Holder, states[2].Holder)
	}
	if h, n := rueidislock.Agreement(states); h != states[0].Holder || n != 2 {
		t.Errorf("Agreement = %q, %d; want %q, 2", h, n, states[0].Holder)
	}
}

// TestInspectNodeDown pins that a node that cannot answer is reported in
// its own state, within the node timeout, and the others still are read.
func TestInspectNodeDown(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	b := dial(t, addrs)
	m := lock.New(b)
	defer m.Close()
	l, err := m.Acquire(context.Background(), "down")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())
	if err := servers[2].Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	states, err := b.Inspect(context.Background(), "down")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Inspect with a node down took %v", d)
	}
	if s := states[2]; s.Err == nil || s.Held || s.Node != 2 || s.Addr != addrs[2] {
		t.Errorf("node 2, killed: %+v, want an error", s)
	}
	if _, n := rueidislock.Agreement(states); n < 2 {
		t.Errorf("Agreement with node 2 down: %d nodes, want the other two", n)
	}
}

func TestInspectBadInput(t *testing.T) {
	_, addrs := startNodes(t, 1)
	b := dial(t, addrs)
	for name, key := range map[string]string{"empty key": "", "NUL": "a\x00fence"} {
		if _, err := b.Inspect(context.Background(), key); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("%s: Inspect err = %v, want %v", name, err, lock.ErrInvalid)
		}
	}
	//lint:ignore SA1012 a nil context must be an error, not a panic
	if _, err := b.Inspect(nil, "k"); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("nil ctx: Inspect err = %v, want %v", err, lock.ErrInvalid)
	}
	b.Close()
	if _, err := b.Inspect(context.Background(), "k"); !errors.Is(err, lock.ErrClosed) {
		t.Errorf("after Close: Inspect err = %v, want %v", err, lock.ErrClosed)
	}
}
