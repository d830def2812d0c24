package rueidislock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/rueidislock"
)

// nodeErrorObserver is an Observer that keeps the NodeError events.
type nodeErrorObserver struct {
	mu     sync.Mutex
	events []lock.NodeErrorEvent
}

func (o *nodeErrorObserver) Acquired(context.Context, lock.AcquireEvent) {}
func (o *nodeErrorObserver) Renewed(context.Context, lock.RenewEvent)    {}
func (o *nodeErrorObserver) Lost(context.Context, lock.LeaseEvent)       {}
func (o *nodeErrorObserver) Released(context.Context, lock.ReleaseEvent) {}

func (o *nodeErrorObserver) NodeError(_ context.Context, e lock.NodeErrorEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

// ops returns the operations of the events of node.
func (o *nodeErrorObserver) ops(node int) map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := make(map[string]bool)
	for _, e := range o.events {
		if e.Node == node {
			ops[e.Op] = true
		}
	}
	return ops
}

// TestObserverNodeErrors pins issue 4 item 3 on the Redis backend: the
// failures of a node reach the Mutex's Observer and logger, with the node's
// index and address, also when a majority of nodes granted, extended and
// released the lock; and no log line holds the lock's value or the
// password of the nodes (guarantee 9).
func TestObserverNodeErrors(t *testing.T) {
	const password = "hunter2-observe-password"
	var nodes []*miniredis.Miniredis
	var addrs, urls []string
	for range 3 {
		mr := miniredis.RunT(t)
		expireInRealTime(t, mr)
		mr.RequireAuth(password)
		nodes = append(nodes, mr)
		addrs = append(addrs, mr.Addr())
		urls = append(urls, fmt.Sprintf("redis://:%s@%s", password, mr.Addr()))
	}
	b, err := rueidislock.Dial(urls, rueidislock.WithNodeTimeout(100*time.Millisecond), rueidislock.WithClientOption(pipelined))
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	obs := new(nodeErrorObserver)
	m := lock.New(b, lock.WithLogger(logger), lock.WithObserver(obs), lock.WithTTL(time.Second))
	defer m.Close()

	down := 2
	nodes[down].Close()
	ctx := context.Background()
	l, err := m.Acquire(ctx, "observed")
	if err != nil {
		t.Fatalf("Acquire with 2 of 3 nodes up: %v", err)
	}
	value, err := nodes[0].Get("observed")
	if err != nil || value == "" {
		t.Fatalf("the lock's value on node 0: %q, %v", value, err)
	}
	if err := l.Extend(ctx, time.Second); err != nil {
		t.Fatalf("Extend with 2 of 3 nodes up: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release with 2 of 3 nodes up: %v", err)
	}
	// Release does not wait for every node: wait for the down node's
	// answer to its release, within the node timeout.
	deadline := time.Now().Add(5 * time.Second)
	for !obs.ops(down)["release"] && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}

	if got, want := obs.ops(down), map[string]bool{"acquire": true, "extend": true, "release": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("node %d's errors were told for %v, want %v", down, got, want)
	}
	if got := obs.ops(0); len(got) != 0 {
		t.Errorf("node 0, which is up, had errors told for %v", got)
	}
	obs.mu.Lock()
	for _, e := range obs.events {
		if e.Key != "observed" || e.Addr != addrs[down] || e.Err == nil {
			t.Errorf("NodeError(%+v), want key %q, addr %s and an error", e, "observed", addrs[down])
		}
	}
	obs.mu.Unlock()

	log := buf.String()
	for _, secret := range []string{value, password} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds a secret (%.6s...):\n%s", secret, log)
		}
	}
	warned := 0
	for _, raw := range strings.Split(strings.TrimSpace(log), "\n") {
		var line struct{ Level, Msg, Addr string }
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if line.Msg == "lock node error" && line.Level == "WARN" && line.Addr == addrs[down] {
			warned++
		}
	}
	if warned < 3 {
		t.Errorf("%d node errors logged at WARN, want at least 3:\n%s", warned, log)
	}
}

// syncBuffer is a bytes.Buffer for writers on several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestObserverWaitErrors checks that errors on the waiting path reach the
// Observer too: here a user without rights on the release channels, whose
// waiter's SUBSCRIBE is refused (it then waits for its delay, as if no
// node announced releases) and whose Release cannot announce.
func TestObserverWaitErrors(t *testing.T) {
	_, urls := aclNodes(t, 1, lockerPass, "~app:*") // no &channel pattern
	obs := new(nodeErrorObserver)
	m := lock.New(dial(t, urls), lock.WithObserver(obs))
	defer m.Close()
	ctx := context.Background()
	l, err := m.Acquire(ctx, "app:unannounced")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := m.Acquire(wctx, "app:unannounced"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter: %v, want its context's end", err)
	}
	if err := l.Release(ctx); err == nil {
		t.Error("Release without the right to announce it succeeded")
	}
	if ops := obs.ops(0); !ops["acquire"] || !ops["release"] {
		t.Errorf("node errors reported for %v, want the waiter's (acquire) and the release's", ops)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, e := range obs.events {
		if e.Op == "acquire" && !strings.Contains(e.Err.Error(), "NOPERM") {
			t.Errorf("waiter's node error %v, want NOPERM", e.Err)
		}
	}
}
