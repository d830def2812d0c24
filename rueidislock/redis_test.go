package rueidislock_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

// startNodes starts n real redis-server nodes for t and returns them with
// their addresses. It skips t without redis-server, unless
// LOCK_REQUIRE_REDIS=1.
func startNodes(t *testing.T, n int) ([]*redistest.Server, []string) {
	servers := redistest.StartN(t, n)
	addrs := make([]string, n)
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return servers, addrs
}

// dial returns a Backend over addrs, closed when t ends.
func dial(t *testing.T, addrs []string, opts ...rueidislock.Option) *rueidislock.Backend {
	t.Helper()
	b, err := rueidislock.Dial(addrs, append([]rueidislock.Option{
		rueidislock.WithNodeTimeout(100 * time.Millisecond), rueidislock.WithClientOption(pipelined),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformanceRedis(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) {
			_, addrs := startNodes(t, n)
			locktest.Run(t, func(t *testing.T) lock.Backend { return dial(t, addrs) },
				locktest.WithPolling(), locktest.WithTTL(500*time.Millisecond))
		})
	}
}

// TestNodeRedlockLayout pins guarantee 10: the lock key is the plain key
// holding a random value with a PX TTL, so that a service using
// node-redlock on the same nodes and this package exclude each other.
func TestNodeRedlockLayout(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	m := lock.New(dial(t, addrs), lock.WithTTL(5*time.Second))
	defer m.Close()
	ctx := context.Background()

	l, err := m.Acquire(ctx, "orders:7")
	if err != nil {
		t.Fatal(err)
	}
	// A majority holds the key at once; a node that answered after the
	// decision may lag a little.
	var value string
	holding := 0
	for i, s := range servers {
		v, err := s.Do("GET", "orders:7").ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(v) {
			t.Fatalf("node %d: GET orders:7 = %q, %v; want 128 random bits in hex", i, v, err)
		}
		if value != "" && v != value {
			t.Fatalf("node %d holds %q, another node %q: want one value", i, v, value)
		}
		value = v
		holding++
		pttl, _ := s.Do("PTTL", "orders:7").AsInt64()
		if pttl <= 0 || pttl > 5000 {
			t.Errorf("node %d: PTTL = %d, want in (0, 5000]", i, pttl)
		}
	}
	if holding < 2 {
		t.Fatalf("%d of 3 nodes hold the key, want a majority", holding)
	}
	// node-redlock releases with a compare-and-delete of its value.
	const release = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`
	for _, s := range servers {
		if _, err := s.Do("EVAL", release, "1", "orders:7", value).AsInt64(); err != nil {
			t.Fatalf("compare-and-delete: %v", err)
		}
	}
	l2, err := m.TryAcquire(ctx, "orders:7")
	if err != nil {
		t.Fatalf("TryAcquire after a node-redlock release = %v", err)
	}
	if l2.Token() <= l.Token() {
		t.Errorf("token %d after %d, want greater", l2.Token(), l.Token())
	}
	l.Release(ctx)
	l2.Release(ctx)

	// A key node-redlock set blocks Acquire.
	for _, s := range servers {
		if err := s.Do("SET", "orders:8", "node-redlock-value", "NX", "PX", "5000").Error(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.TryAcquire(ctx, "orders:8"); !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("TryAcquire of a key node-redlock holds = %v, want %v", err, lock.ErrNotAcquired)
	}
}

// TestFencingFallback pins the second round of fencing: when a node knows a
// counter larger than the proposal, the token goes past it.
func TestFencingFallback(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	m := lock.New(dial(t, addrs))
	defer m.Close()
	ctx := context.Background()
	ahead := time.Now().Add(time.Hour).UnixMicro()
	// Two nodes of three know a counter from a clock an hour ahead: the
	// proposal is stored on one node only, fewer than a majority.
	for _, s := range servers[1:] {
		if err := s.Do("SET", "{fenced}\x00fence", fmt.Sprint(ahead)).Error(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := m.Acquire(ctx, "{fenced}")
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() != uint64(ahead)+1 {
		t.Errorf("token = %d, want the largest counter + 1 = %d", l.Token(), ahead+1)
	}
	l.Release(ctx)
	raised := 0
	for _, s := range servers {
		if c, err := s.Do("GET", "{fenced}\x00fence").AsInt64(); err == nil && c >= ahead+1 {
			raised++
		}
	}
	if raised < 2 {
		t.Errorf("%d nodes hold the token, want a majority", raised)
	}
	l2, err := m.Acquire(ctx, "{fenced}")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(ctx)
	if l2.Token() <= l.Token() {
		t.Errorf("next token %d, want above %d", l2.Token(), l.Token())
	}
}

// TestNewChecksClients pins the bad-configuration errors of New and Dial.
func TestNewChecksClients(t *testing.T) {
	_, addrs := startNodes(t, 1)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, err := range map[string]error{
		"no clients":     func() error { _, err := rueidislock.New(nil); return err }(),
		"nil client":     func() error { _, err := rueidislock.New([]rueidis.Client{nil}); return err }(),
		"same client":    func() error { _, err := rueidislock.New([]rueidis.Client{c, c}); return err }(),
		"no addrs":       func() error { _, err := rueidislock.Dial(nil); return err }(),
		"same addr":      func() error { _, err := rueidislock.Dial([]string{addrs[0], addrs[0]}); return err }(),
		"bad addr":       func() error { _, err := rueidislock.Dial([]string{"nohost"}); return err }(),
		"bad timeout":    func() error { _, err := rueidislock.Dial(addrs, rueidislock.WithNodeTimeout(0)); return err }(),
		"secret in addr": func() error { _, err := rueidislock.Dial([]string{"redis://u:s3cret@[bad"}); return err }(),
	} {
		if !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("%s: err = %v, want %v", name, err, lock.ErrInvalid)
		}
		if err != nil && regexp.MustCompile("s3cret").MatchString(err.Error()) {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
	b, err := rueidislock.New([]rueidis.Client{c})
	if err != nil {
		t.Fatal(err)
	}
	m := lock.New(b)
	defer m.Close()
	if _, err := m.Acquire(context.Background(), "k", lock.WithTTL(100*time.Millisecond)); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("TTL under the drift plus two node timeouts: err = %v, want %v", err, lock.ErrInvalid)
	}
	if _, err := m.Acquire(context.Background(), "a\x00b"); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("key with NUL: err = %v, want %v", err, lock.ErrInvalid)
	}
}

// gone reports whether key is absent from s, or becomes so within d.
func gone(s *redistest.Server, key string, d time.Duration) bool {
	for end := time.Now().Add(d); ; {
		if n, err := s.Do("EXISTS", key).AsInt64(); err == nil && n == 0 {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(time.Millisecond) // polls a server, which cannot signal
	}
}

// TestReleaseWakesWaiter pins guarantee 6 on Redis: a waiter gets the key
// when it is released, not at its retry delay (an hour here).
func TestReleaseWakesWaiter(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	m := lock.New(dial(t, addrs), lock.WithDelay(time.Hour))
	defer m.Close()
	ctx := context.Background()
	l, err := m.Acquire(ctx, "wake")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *lock.Lease)
	go func() {
		l2, err := m.Acquire(ctx, "wake")
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	// Release once the waiter listens on every node, so that only the
	// notification can wake it before its hour-long delay.
	if !pollUntil(10*time.Second, func() bool {
		for _, s := range servers {
			v, err := s.Do("PUBSUB", "NUMSUB", "leaselock:released\x00wake").ToArray()
			if err != nil || len(v) != 2 {
				return false
			}
			if n, _ := v[1].AsInt64(); n < 1 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the waiter did not subscribe to the release channel on every node")
	}
	l.Release(ctx)
	select {
	case l2 := <-got:
		if l2 != nil {
			l2.Release(ctx)
		}
	case <-time.After(5 * time.Second): // the holder's TTL, 10s, would wake it later
		t.Fatal("waiter not woken by the release")
	}
}

// TestCloseWakesWaiters checks that Close ends an Acquire waiting for a key
// held by another client at once, with ErrClosed, where the waiter would
// otherwise sleep until a release, its hour-long delay or the holder's
// minute-long TTL.
func TestCloseWakesWaiters(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) {
			_, addrs := startNodes(t, n)
			ctx := context.Background()
			holder := lock.New(dial(t, addrs))
			defer holder.Close()
			if _, err := holder.Acquire(ctx, "close:wakes", lock.WithTTL(time.Minute), lock.WithAutoExtend(false)); err != nil {
				t.Fatal(err)
			}
			b := dial(t, addrs)
			m := lock.New(b)
			got := make(chan error, 1)
			go func() {
				_, err := m.Acquire(ctx, "close:wakes", lock.WithDelay(time.Hour), lock.WithJitter(0))
				got <- err
			}()
			// Closing while the waiter subscribes or queues is the other
			// race: wait until it sleeps.
			if !pollUntil(2*time.Second, func() bool { return b.Waiting() == 1 }) {
				t.Fatal("the waiter never waited")
			}
			m.Close()
			select {
			case err := <-got:
				if !errors.Is(err, lock.ErrClosed) {
					t.Errorf("waiter: %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the waiter was not woken by Close")
			}
		})
	}
}
