package rueidislock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// queueLen returns the length of key's queue of waiters on s.
func queueLen(t *testing.T, s *redistest.Server, key string) int64 {
	t.Helper()
	n, err := s.Do("LLEN", rueidislock.QueueKey(key)).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// refusals returns how many attempts s has refused since it started: the
// acquire script reads the holder's PTTL only on a refusal.
func refusals(t *testing.T, s *redistest.Server) int64 {
	return infoField(t, s, "commandstats", "cmdstat_pttl", "calls")
}

// waitQueued waits until key's queue on s holds n waiters.
func waitQueued(t *testing.T, s *redistest.Server, key string, n int64) {
	t.Helper()
	if !pollUntil(2*time.Second, func() bool { return queueLen(t, s, key) == n }) {
		t.Fatalf("queue of %q: %d waiters, want %d", key, queueLen(t, s, key), n)
	}
}

// heldOnOneNode starts a single node and returns it, its address, and a
// lease on key held there by a client of its own.
func heldOnOneNode(t *testing.T, key string) (*redistest.Server, []string, *lock.Lease) {
	t.Helper()
	servers, addrs := startNodes(t, 1)
	holder := lock.New(dial(t, addrs))
	t.Cleanup(func() { holder.Close() })
	l, err := holder.Acquire(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return servers[0], addrs, l
}

// warmWatch has m wait for key, held by another, for a moment, so that its
// subscription to the key's releases stands when its next Acquire waits
// (it lingers for a second): that wait then makes no attempt of its own,
// as a first wait does, and the registration its first attempt made is the
// one it keeps.
func warmWatch(t *testing.T, m *lock.Mutex, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if l, err := m.Acquire(ctx, key); err == nil {
		l.Release(ctx)
		t.Fatalf("warm-up: %q was free", key)
	}
}

// served starts an Acquire of key on m that only a wake-up can serve (its
// retry delay is a minute) and that releases at once; its outcome arrives
// on the channel.
func served(m *lock.Mutex, key string) <-chan error {
	got := make(chan error, 1)
	go func() {
		ctx := context.Background()
		l, err := m.Acquire(ctx, key, lock.WithDelay(time.Minute))
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	return got
}

// expectServed fails the test unless the Acquire of served succeeds
// within 5 s; failure says what went wrong.
func expectServed(t *testing.T, got <-chan error, failure string) {
	t.Helper()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(failure)
	}
}

// TestQueueWakesOneWaiter checks that on a single node a release wakes one
// waiter, the one that has waited longest, and no other: four waiters, each
// with a backend of its own as a process would have, are served in the
// order they came, with no attempt refused on the way, where waking every
// waiter would have all but one fail at each release.
func TestQueueWakesOneWaiter(t *testing.T) {
	const key = "queue:fifo"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()

	const waiters = 4
	served := queueWaiters(t, s, addrs, key, waiters)
	before := refusals(t, s)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var got []int
	for range waiters {
		w := <-served
		if w.err != nil {
			t.Fatal(w.err)
		}
		got = append(got, w.i)
		if err := w.l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[0 1 2 3]" {
		t.Errorf("waiters served in the order %v, want the order they came, [0 1 2 3]", got)
	}
	if n := refusals(t, s) - before; n != 0 {
		t.Errorf("%d attempts refused after the first release: waiters were woken for a key another got", n)
	}
	if keys, err := s.Do("KEYS", "*\x00queue*").AsStrSlice(); err != nil || len(keys) != 0 {
		t.Errorf("queue keys left once every waiter was served: %q (err %v)", keys, err)
	}
}

// waited is the outcome of one waiter of queueWaiters.
type waited struct {
	i   int // the waiter's place in the queue
	l   *lock.Lease
	err error
}

// queueWaiters starts n waiters of key on the single node s, each with a
// backend of its own as a process would have and a retry delay far beyond
// the test, so that only a release serves them, and returns once all are
// queued, in turn. Their outcomes arrive on the channel, as they are
// served; the caller releases their leases.
func queueWaiters(t *testing.T, s *redistest.Server, addrs []string, key string, n int) <-chan waited {
	t.Helper()
	out := make(chan waited, n)
	for i := range n {
		m := lock.New(dial(t, addrs))
		t.Cleanup(func() { m.Close() })
		warmWatch(t, m, key)
		go func() {
			l, err := m.Acquire(context.Background(), key, lock.WithDelay(time.Minute), lock.WithJitter(0))
			out <- waited{i, l, err}
		}()
		waitRegistered(t, s, key, i+1)
	}
	return out
}

// TestQueueWaiterLeaves checks that a waiter whose context ends leaves the
// queue: the release after it wakes the next waiter, not the one gone.
func TestQueueWaiterLeaves(t *testing.T) {
	leaveThenRelease(t, "queue:leave", func(_ *lock.Mutex, cancel func()) { cancel() },
		context.Canceled, "the waiter left in the queue was not woken by the release")
}

// leaveThenRelease queues two waiters of key, each of a backend of its
// own, on a single node; has leave make the first leave (given its Mutex
// and the cancel func of its Acquire's context), whose Acquire must then
// fail with want; and releases the key, which must then serve the second,
// or the test fails with failure.
func leaveThenRelease(t *testing.T, key string, leave func(m *lock.Mutex, cancel func()), want error, failure string) {
	t.Helper()
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	leaver, stay := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer leaver.Close()
	defer stay.Close()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	left := make(chan error, 1)
	go func() {
		_, err := leaver.Acquire(lctx, key, lock.WithDelay(time.Minute))
		left <- err
	}()
	waitQueued(t, s, key, 1)
	got := served(stay, key)
	waitQueued(t, s, key, 2)

	leave(leaver, cancel)
	if err := <-left; !errors.Is(err, want) {
		t.Fatalf("the leaving waiter's Acquire: %v, want %v", err, want)
	}
	waitQueued(t, s, key, 1)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	expectServed(t, got, failure)
}

// TestQueueOnlyOnSingleNode checks that over several nodes no queue is
// kept: their queues could name different waiters, none on a majority.
func TestQueueOnlyOnSingleNode(t *testing.T) {
	servers, addrs := startNodes(t, 3)
	const key = "queue:none"
	ctx := context.Background()
	m := lock.New(dial(t, addrs))
	defer m.Close()
	l, err := m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := served(m, key)
	// The waiter is subscribed once every node counts a subscriber.
	channel := "leaselock:released\x00" + key
	if !pollUntil(2*time.Second, func() bool {
		for _, s := range servers {
			v, err := s.Do("PUBSUB", "NUMSUB", channel).ToArray()
			if err != nil || len(v) != 2 {
				return false
			}
			if n, _ := v[1].AsInt64(); n == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the waiter did not subscribe on every node")
	}
	for i, s := range servers {
		if keys, err := s.Do("KEYS", "*").AsStrSlice(); err == nil {
			for _, k := range keys {
				if strings.Contains(k, "\x00queue") {
					t.Errorf("node %d keeps a queue %q over 3 nodes", i, k)
				}
			}
		}
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestQueueGiveUp checks that an Acquire whose retries run out while it
// is queued leaves the queue: the release after it wakes the next waiter,
// not the one gone.
func TestQueueGiveUp(t *testing.T) {
	const key = "queue:giveup"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	quitter, waiter := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer quitter.Close()
	defer waiter.Close()

	gaveUp := make(chan error, 1)
	go func() {
		_, err := quitter.Acquire(ctx, key, lock.WithRetry(2), lock.WithDelay(100*time.Millisecond), lock.WithJitter(0))
		gaveUp <- err
	}()
	waitQueued(t, s, key, 1)
	if err := <-gaveUp; !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("Acquire with its retries run out: %v, want ErrNotAcquired", err)
	}
	waitQueued(t, s, key, 0)

	got := served(waiter, key)
	waitQueued(t, s, key, 1)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	expectServed(t, got, "the waiter was not woken by the release")
}

// TestQueueCloseLeaves checks that Close takes its waiters out of the
// queues, so that the next release wakes a waiter of another client.
func TestQueueCloseLeaves(t *testing.T) {
	leaveThenRelease(t, "queue:close", func(m *lock.Mutex, _ func()) { m.Close() },
		lock.ErrClosed, "the other client's waiter was not woken by the release")
}

// TestQueueLeaverPassesWake checks the race of a waiter leaving with a
// release that took it out of the queue to wake it: the wake-up would be
// lost, with the key free. The leaving waiter's dequeue finds itself gone
// and the key free, and serves the next waiter. The release is played by
// hand (LPOP and DEL, no announcement) to fix the order.
func TestQueueLeaverPassesWake(t *testing.T) {
	leaveAfterRelease(t, "queue:race", func(s *redistest.Server, key, _ string) {
		if err := s.Do("LPOP", rueidislock.QueueKey(key)).Error(); err != nil {
			t.Fatal(err)
		}
		if err := s.Do("DEL", key).Error(); err != nil {
			t.Fatal(err)
		}
	}, "the next waiter was not served when the popped waiter left")
}

// leaveAfterRelease queues two waiters, each of a backend of its own, for
// key on a single node, has release play a release that serves the first
// (given its registration) without telling it, makes that waiter leave,
// and fails the test with failure unless the second is then served: the
// leaving waiter must pass on what the release gave it.
func leaveAfterRelease(t *testing.T, key string, release func(s *redistest.Server, key, leaverReg string), failure string) {
	t.Helper()
	s, addrs, _ := heldOnOneNode(t, key)
	ctx := context.Background()
	leaver, waiter := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer leaver.Close()
	defer waiter.Close()
	warmWatch(t, leaver, key)
	warmWatch(t, waiter, key)

	lctx, cancel := context.WithCancel(ctx)
	left := make(chan error, 1)
	go func() {
		_, err := leaver.Acquire(lctx, key, lock.WithDelay(time.Minute))
		left <- err
	}()
	var leaverReg string
	for _, reg := range waitRegistered(t, s, key, 1) {
		leaverReg = reg
	}
	got := served(waiter, key)
	waitRegistered(t, s, key, 2)

	release(s, key, leaverReg)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("the leaving waiter: %v, want context.Canceled", err)
	}
	expectServed(t, got, failure)
}

// TestQueueWakesOnlyItsProcess checks that a release that serves a queued
// waiter (wakes it, or hands it the key) tells that waiter's process
// alone, on the process's channel of the key, so that the other processes waiting for the key are not woken for
// nothing; a release with nobody queued tells every process, on the key's
// channel. A subscriber to every channel of the package watches two
// waiters of two backends served in turn.
func TestQueueWakesOnlyItsProcess(t *testing.T) {
	const key = "queue:targeted"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()

	watcher, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	wctx, stop := context.WithCancel(ctx)
	received := make(chan rueidis.PubSubMessage, 16)
	watching := make(chan error, 1)
	go func() {
		watching <- watcher.Receive(wctx, watcher.B().Psubscribe().Pattern("leaselock:released*").Build(),
			func(m rueidis.PubSubMessage) { received <- m })
	}()
	defer func() { stop(); <-watching }()
	if !pollUntil(2*time.Second, func() bool { n, _ := s.Do("PUBSUB", "NUMPAT").AsInt64(); return n > 0 }) {
		t.Fatal("the watching subscriber did not subscribe")
	}

	first, second := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer first.Close()
	defer second.Close()
	got1 := served(first, key)
	waitQueued(t, s, key, 1)
	got2 := served(second, key)
	waitQueued(t, s, key, 2)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	expectServed(t, got1, "the first waiter was not woken")
	expectServed(t, got2, "the second waiter was not woken")

	// Three releases: two wake a waiter each, the last wakes nobody.
	keyChannel := "leaselock:released\x00" + key
	processes := map[string]bool{}
	for i := range 3 {
		var m rueidis.PubSubMessage
		select {
		case m = <-received:
		case <-time.After(5 * time.Second):
			t.Fatalf("release %d: no announcement heard", i+1)
		}
		waiter, named := strings.CutPrefix(m.Message, "\x00")
		if handed, ok := strings.CutPrefix(m.Message, "\x01"); ok {
			// A hand-over: "token digest waiter".
			fields := strings.Fields(handed)
			waiter, named = fields[len(fields)-1], len(fields) == 3
		}
		if i == 2 {
			if named || m.Channel != keyChannel {
				t.Errorf("release with nobody queued: %q on %q, want a release name on the key's channel %q", m.Message, m.Channel, keyChannel)
			}
			continue
		}
		process, _, ok := strings.Cut(waiter, ":")
		if !named || !ok {
			t.Fatalf("release %d announced %q, want a wake-up or a hand-over naming a waiter, process:wait", i+1, m.Message)
		}
		if want := keyChannel + "\x00" + process; m.Channel != want {
			t.Errorf("release %d named waiter %q on channel %q, want its process's %q", i+1, waiter, m.Channel, want)
		}
		processes[process] = true
	}
	if len(processes) != 2 {
		t.Errorf("the two waiters were named for %d processes, want 2", len(processes))
	}
	select {
	case m := <-received:
		t.Errorf("an announcement more than the releases: %q on %q", m.Message, m.Channel)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestQueueOutlivesShortTTL checks that a waiter with a short TTL does not
// shorten the life of the queue that a waiter with a longer TTL is in: the
// queue would expire with the first waiter still in it, and a later queue
// would serve only those who came after.
func TestQueueOutlivesShortTTL(t *testing.T) {
	const key = "queue:outlive"
	s, addrs, l := heldOnOneNode(t, key)
	defer l.Release(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long, short := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer long.Close()
	defer short.Close()
	// Warmed, each waiter queues with its first attempt and no other.
	warmWatch(t, long, key)
	go long.Acquire(ctx, key, lock.WithTTL(10*time.Second), lock.WithDelay(time.Minute))
	waitRegistered(t, s, key, 1)
	warmWatch(t, short, key)
	go short.Acquire(ctx, key, lock.WithTTL(time.Second), lock.WithDelay(time.Minute))
	waitRegistered(t, s, key, 2)
	if ttl, _ := s.Do("PTTL", rueidislock.QueueKey(key)).AsInt64(); ttl < 9000 {
		t.Errorf("queue expires in %d ms, after a waiter with a 1s TTL joined one with 10s: want about 10s", ttl)
	}
}

// pauseAfterWait is a Backend whose Wait, once the Backend's Wait returned,
// tells paused and holds its caller until resume is closed: a waiter
// between two waits, out of the Backend's watch but still in the node's
// queue.
type pauseAfterWait struct {
	*rueidislock.Backend
	paused chan struct{}
	resume chan struct{}
}

func (p *pauseAfterWait) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	res, err := p.Backend.Wait(ctx, req, d)
	select {
	case p.paused <- struct{}{}:
	default:
	}
	<-p.resume
	return res, err
}

// TestCloseLeavesWaitersBetweenWaits checks that closing a Backend takes
// every waiter of its process out of the node's queue and registrations,
// also one that is between two waits at that moment, and so in no watch
// of the Backend: left there, it would be woken, or handed the key, after
// it is gone.
func TestCloseLeavesWaitersBetweenWaits(t *testing.T) {
	const key = "queue:close-between"
	s, addrs, l := heldOnOneNode(t, key)
	defer l.Release(context.Background())
	b := &pauseAfterWait{Backend: dial(t, addrs), paused: make(chan struct{}, 1), resume: make(chan struct{})}
	m := lock.New(b)
	defer m.Close()
	got := make(chan error, 1)
	go func() {
		_, err := m.Acquire(context.Background(), key, lock.WithDelay(50*time.Millisecond), lock.WithJitter(0))
		got <- err
	}()
	<-b.paused
	if n := queueLen(t, s, key); n != 1 {
		t.Fatalf("%d waiters queued between two waits, want 1", n)
	}
	if err := b.Backend.Close(); err != nil {
		t.Fatal(err)
	}
	if n := queueLen(t, s, key); n != 0 {
		t.Errorf("%d waiters left in the queue after Close", n)
	}
	if regs := registered(t, s, key); len(regs) != 0 {
		t.Errorf("registrations left after Close: %v", regs)
	}
	close(b.resume)
	if err := <-got; !errors.Is(err, lock.ErrClosed) {
		t.Errorf("the waiting Acquire returned %v, want ErrClosed", err)
	}
}

// TestGrantDuringClose checks that an attempt granted while the Backend
// closes gives its key back before the clients close, instead of returning
// a grant that no Release can free: the key would stay until its TTL. Over
// several nodes the give-back fans out to them while Close waits.
func TestGrantDuringClose(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) { checkGrantDuringClose(t, nodes) })
	}
}

func checkGrantDuringClose(t *testing.T, nodes int) {
	const key = "close:grant"
	servers, addrs := startNodes(t, nodes)
	proxies := make([]*redistest.Proxy, nodes)
	for i := range addrs {
		proxies[i] = redistest.StartProxy(t, addrs[i])
		addrs[i] = proxies[i].Addr()
	}
	b := dial(t, addrs, rueidislock.WithNodeTimeout(time.Second))
	m := lock.New(b)
	defer m.Close()
	ctx := context.Background()
	// Loads the script, so that the attempt's EVALSHA needs no reply to run.
	l, err := m.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	awaitWarm(t, servers, key)
	for _, p := range proxies {
		if err := p.Set(redistest.HoldReplies(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan error, 1)
	go func() {
		l, err := m.TryAcquire(ctx, key)
		if err == nil {
			t.Error("TryAcquire returned a lease of a closed Backend")
			l.Release(ctx)
		}
		got <- err
	}()
	// The nodes granted; their replies are held.
	if !pollUntil(5*time.Second, func() bool {
		for _, s := range servers {
			if mustInt(s.Do("EXISTS", key)) != 1 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the attempt did not reach the nodes")
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	// Close began: new calls fail with ErrClosed, where before they failed
	// with ErrInvalid, for a TTL too short, without a node call.
	if !pollUntil(5*time.Second, func() bool {
		_, err := b.Acquire(ctx, lock.Request{Key: "x", TTL: time.Millisecond})
		return errors.Is(err, lock.ErrClosed)
	}) {
		t.Fatal("Close did not begin")
	}
	for _, p := range proxies { // the grants arrive
		if err := p.Set(redistest.Pass()); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, lock.ErrClosed) {
		t.Errorf("TryAcquire during Close returned %v, want ErrClosed", err)
	}
	for i, s := range servers {
		if n := mustInt(s.Do("EXISTS", key)); n != 0 {
			t.Errorf("the key granted during Close is still set on node %d after it", i)
		}
	}
}

// mustInt returns r as an int64, or -1 if it is not one.
func mustInt(r rueidis.RedisResult) int64 {
	n, err := r.AsInt64()
	if err != nil {
		return -1
	}
	return n
}
