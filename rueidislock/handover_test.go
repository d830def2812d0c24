package rueidislock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// scriptCalls returns how many scripts s has run since it started: an
// EVALSHA refused with NOSCRIPT, and sent again as EVAL, counts once.
func scriptCalls(t *testing.T, s *redistest.Server) int64 {
	return infoField(t, s, "commandstats", "cmdstat_evalsha", "calls") -
		infoField(t, s, "commandstats", "cmdstat_evalsha", "failed_calls") +
		infoField(t, s, "commandstats", "cmdstat_eval", "calls")
}

// registered returns the waiters registered for a hand-over of key on s,
// by name, with their registrations.
func registered(t *testing.T, s *redistest.Server, key string) map[string]string {
	t.Helper()
	m, err := s.Do("HGETALL", rueidislock.RegistrationsKey(key)).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitRegistered waits until n waiters of key are registered on s, and
// returns their registrations.
func waitRegistered(t *testing.T, s *redistest.Server, key string, n int) map[string]string {
	t.Helper()
	var regs map[string]string
	if !pollUntil(2*time.Second, func() bool { regs = registered(t, s, key); return len(regs) == n }) {
		t.Fatalf("%d waiters of %q registered for a hand-over, want %d", len(regs), key, n)
	}
	return regs
}

// handOverByHand plays a release that hands key over to the registration
// reg and loses its message: the waiter is never told.
func handOverByHand(t *testing.T, s *redistest.Server, key, reg string) {
	t.Helper()
	var value string
	var ttl int64
	if _, err := fmt.Sscanf(reg, "%s %d", &value, &ttl); err != nil {
		t.Fatalf("registration %q: %v", reg, err)
	}
	if err := s.Do("SET", key, value, "PX", strconv.FormatInt(ttl, 10)).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestHandOverSavesAnAttempt checks that on a single node a release hands
// the key over to the waiter first in the queue: the waiters hold their
// leases with no attempt of their own after the release, one script per
// hand-off (the release's) where a wake-up would cost a release and an
// attempt. The tokens still rise at every hand-off, past a counter that is
// ahead of the clocks too, and nothing is left behind.
func TestHandOverSavesAnAttempt(t *testing.T) {
	const key = "handover:chain"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	ahead := time.Now().Add(time.Hour).UnixMicro()
	if err := s.Do("SET", rueidislock.FenceKey(key), strconv.FormatInt(ahead, 10)).Error(); err != nil {
		t.Fatal(err)
	}

	const waiters = 3
	served := queueWaiters(t, s, addrs, key, waiters)
	tokens := []uint64{l.Token()}
	for i := range waiters {
		before := scriptCalls(t, s)
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case w := <-served:
			if w.err != nil {
				t.Fatal(w.err)
			}
			l = w.l
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d not served 5 s after the release", i)
		}
		if n := scriptCalls(t, s) - before; n != 1 {
			t.Errorf("hand-off %d: %d scripts from the release to the lease, want 1, the release's", i, n)
		}
		if err := l.Err(); err != nil {
			t.Fatalf("hand-off %d: the lease has ended: %v", i, err)
		}
		if v, err := s.Do("PTTL", key).AsInt64(); err != nil || v <= 0 {
			t.Errorf("hand-off %d: the key's PTTL is %d (%v), want the lease's TTL running", i, v, err)
		}
		tokens = append(tokens, l.Token())
		counter, _ := s.Do("GET", rueidislock.FenceKey(key)).AsUint64()
		if l.Token() <= tokens[len(tokens)-2] || l.Token() != counter {
			t.Errorf("hand-off %d: token %d after %d, counter %d: want a larger token, stored", i, l.Token(), tokens[len(tokens)-2], counter)
		}
	}
	if tokens[1] != uint64(ahead)+1 {
		t.Errorf("first hand-over's token %d, want the counter ahead of the clock plus one, %d", tokens[1], ahead+1)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := (redistest.Residue{Match: "handover:*", TTL: lock.DefaultTTL}).Teardown(ctx, []*redistest.Server{s}); err != nil {
		t.Errorf("O4: %v", err)
	}
	if regs := registered(t, s, key); len(regs) != 0 {
		t.Errorf("registrations left once every waiter was served: %q", regs)
	}
}

// TestHandOverTakenByAttempt checks a hand-over whose message is lost: the
// waiter does not know it holds the key, and its next attempt, after its
// delay, takes the key it was handed instead of waiting for it to expire.
func TestHandOverTakenByAttempt(t *testing.T) {
	const key = "handover:lost"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	m := lock.New(dial(t, addrs))
	defer m.Close()
	warmWatch(t, m, key)
	got := make(chan error, 1)
	go func() {
		l, err := m.Acquire(ctx, key, lock.WithDelay(200*time.Millisecond), lock.WithJitter(0))
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	regs := waitRegistered(t, s, key, 1)
	// The holder's lease goes: its key is handed over by hand.
	if err := s.Do("DEL", key).Error(); err != nil {
		t.Fatal(err)
	}
	for _, reg := range regs {
		handOverByHand(t, s, key, reg)
	}
	l.Release(ctx) // finds the key gone; wakes nobody
	expectServed(t, got, "the waiter did not take the key handed over to it (it expires after the 10 s TTL)")
}

// TestHandOverToLeaver checks a hand-over to a waiter that leaves before it
// takes the key: its leaving frees the key and hands it to the next waiter.
// The hand-over is played by hand, and its message lost.
func TestHandOverToLeaver(t *testing.T) {
	leaveAfterRelease(t, "handover:leaver", func(s *redistest.Server, key, leaverReg string) {
		handOverByHand(t, s, key, leaverReg)
		if err := s.Do("LPOP", rueidislock.QueueKey(key)).Error(); err != nil {
			t.Fatal(err)
		}
	}, "the key handed over to the waiter that left was not passed on to the next")
}

// TestHandOverExpired checks that a release hands nothing over to a
// registration that has expired, which could belong to a waiter that is
// gone, and wakes its waiter instead, which takes the key with an attempt
// of its own.
func TestHandOverExpired(t *testing.T) {
	const key = "handover:expired"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	m := lock.New(dial(t, addrs))
	defer m.Close()
	warmWatch(t, m, key)
	got := served(m, key)
	regs := waitRegistered(t, s, key, 1)
	for waiter, reg := range regs {
		// The same registration, expired at the epoch.
		var value, ttl, proposal string
		fmt.Sscan(reg, &value, &ttl, &proposal)
		if err := s.Do("HSET", rueidislock.RegistrationsKey(key), waiter, value+" "+ttl+" "+proposal+" 1").Error(); err != nil {
			t.Fatal(err)
		}
	}
	before := scriptCalls(t, s)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	expectServed(t, got, "the waiter of the expired registration was not woken")
	// The release, the waiter's attempt, and its release.
	if n := scriptCalls(t, s) - before; n != 3 {
		t.Errorf("%d scripts from the release to the waiter's release, want 3: the key was handed over, not taken by an attempt", n)
	}
	if regs := registered(t, s, key); len(regs) != 0 {
		t.Errorf("registrations left: %q", regs)
	}
}

// TestHandOverRegistrationsOutliveKey checks that the registrations live at
// least as long as a key handed over with one of them, which a waiter that
// missed the hand-over's message needs to take the key or free it: a later
// registration with a shorter TTL must not cut them short.
func TestHandOverRegistrationsOutliveKey(t *testing.T) {
	const key = "handover:outlive"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	long, short := lock.New(dial(t, addrs)), lock.New(dial(t, addrs))
	defer long.Close()
	defer short.Close()
	leases := make(chan *lock.Lease, 1)
	go func() {
		l, err := long.Acquire(ctx, key, lock.WithTTL(10*time.Second), lock.WithDelay(time.Minute))
		if err != nil {
			t.Error(err)
		}
		leases <- l
	}()
	waitRegistered(t, s, key, 1)
	go short.Acquire(ctx, key, lock.WithTTL(time.Second), lock.WithDelay(time.Minute))
	waitRegistered(t, s, key, 2)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var got *lock.Lease
	select {
	case got = <-leases:
	case <-time.After(5 * time.Second):
		t.Fatal("the first waiter was not served")
	}
	defer got.Release(ctx)
	keyTTL, _ := s.Do("PTTL", key).AsInt64()
	regsTTL, _ := s.Do("PTTL", rueidislock.RegistrationsKey(key)).AsInt64()
	if keyTTL <= 0 || regsTTL < keyTTL-100 {
		t.Errorf("registrations expire in %d ms, the key handed over in %d ms: want them to outlive it", regsTTL, keyTTL)
	}
}

// TestHandOverReleaseForgetsRegistration checks that the release of a
// lease that came from a hand-over forgets its registration even when the
// key is gone (here deleted by hand, as if it had expired): the lease is
// over, and a registration left behind would live as long as the key stays
// contended.
func TestHandOverReleaseForgetsRegistration(t *testing.T) {
	const key = "handover:forget"
	s, addrs, l := heldOnOneNode(t, key)
	ctx := context.Background()
	served := queueWaiters(t, s, addrs, key, 1)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := <-served
	if w.err != nil {
		t.Fatal(w.err)
	}
	if regs := registered(t, s, key); len(regs) != 1 {
		t.Fatalf("registrations while the handed-over lease is held: %v, want its own", regs)
	}
	if err := s.Do("DEL", key).Error(); err != nil {
		t.Fatal(err)
	}
	w.l.Release(ctx) // fails: the key is gone
	if regs := registered(t, s, key); len(regs) != 0 {
		t.Errorf("registrations left after the release: %v", regs)
	}
}

// TestHandOverRegistrationWithinValidity checks that a registration lasts
// half the lease's validity (TTL - Drift) at most: with a large drift
// factor, half the TTL would let a hand-over come after the validity,
// which the waiter would have to give back.
func TestHandOverRegistrationWithinValidity(t *testing.T) {
	const key = "handover:validity"
	s, addrs, l := heldOnOneNode(t, key)
	defer l.Release(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := lock.New(dial(t, addrs))
	defer m.Close()
	opts := []lock.Option{lock.WithTTL(10 * time.Second), lock.WithDriftFactor(0.6), lock.WithDelay(time.Minute)}
	warmWatch(t, m, key)
	go m.Acquire(ctx, key, opts...)
	var reg string
	for _, r := range waitRegistered(t, s, key, 1) {
		reg = r
	}
	fields := strings.Fields(reg) // value ttl proposal expiresAtMs
	now, err := s.Do("TIME").AsStrSlice()
	if len(fields) != 4 || err != nil {
		t.Fatalf("registration %q, TIME %v (err %v)", reg, now, err)
	}
	expires, _ := strconv.ParseInt(fields[3], 10, 64)
	sec, _ := strconv.ParseInt(now[0], 10, 64)
	usec, _ := strconv.ParseInt(now[1], 10, 64)
	// Validity: 10s - (6s + 2ms drift), so 2s at most, less what passed.
	if left := expires - (sec*1000 + usec/1000); left > 2000 {
		t.Errorf("registration lasts %d ms more, past half the validity (2s)", left)
	}
}

// TestHandOverDuringClose checks that a Mutex that closes while it holds a
// key and another of its Acquires waits for it leaves nothing on the node:
// Close's release hands the key over to that waiter, whose Acquire then
// ends with ErrClosed, and the key it was handed must be freed before the
// Backend's clients close, not left until its TTL.
func TestHandOverDuringClose(t *testing.T) {
	const key = "handover:close"
	servers, addrs := startNodes(t, 1)
	s := servers[0]
	ctx := context.Background()
	for i := range 20 {
		m := lock.New(dial(t, addrs))
		if _, err := m.Acquire(ctx, key); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() {
			l, err := m.Acquire(ctx, key, lock.WithDelay(time.Minute))
			if err == nil {
				l.Release(ctx)
			}
			waited <- err
		}()
		waitRegistered(t, s, key, 1)
		m.Close()
		if err := <-waited; !errors.Is(err, lock.ErrClosed) {
			t.Errorf("round %d: the waiting Acquire returned %v, want ErrClosed", i, err)
		}
		if v, err := s.Do("GET", key).ToString(); !rueidis.IsRedisNil(err) {
			t.Fatalf("round %d: %q still holds %q after Close (err %v)", i, key, v, err)
		}
		if regs := registered(t, s, key); len(regs) != 0 {
			t.Fatalf("round %d: registrations left after Close: %v", i, regs)
		}
		if n := queueLen(t, s, key); n != 0 {
			t.Fatalf("round %d: %d waiters left in the queue after Close", i, n)
		}
	}
}
