// Package memory provides a lock.Backend that keeps locks in the memory of
// one process: zero setup, for programs that run as one process, for tests,
// and for examples.
//
// Keys are spread over shards, each with its own mutex, so that unrelated
// keys do not contend. A release hands the key to a waiter directly, with
// no polling; keys expire without a background goroutine, checked when they
// are next used; and an unused key costs no memory. Fencing tokens come from a
// per-shard counter, so they strictly increase for each key even after the
// key's state was freed.
//
// A waiter is served in the order its Acquire call began. As with
// sync.Mutex, a caller arriving while the key is free may take it ahead of a
// waiter that was just woken, which keeps a hot key fast; a waiter that has
// waited longer than a millisecond is handed the key directly instead, so no
// waiter starves.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// DefaultShards is the number of shards of a Backend.
const DefaultShards = 64

// MaxShards is the largest number of shards of a Backend.
const MaxShards = 1 << 16

// starveAfter is how long a waiter may wait before a release hands it the
// key directly, instead of waking it to compete with new arrivals.
const starveAfter = time.Millisecond

// maxSpare is how many unused entries a shard keeps for reuse.
const maxSpare = 64

// maxIdle is how many free keys a shard keeps in its map, so that a key
// locked again and again costs a map lookup rather than an insert and a
// delete. Beyond them, a free key costs no memory.
const maxIdle = 8

// A Backend keeps locks in memory. Create one with New; it is safe for
// concurrent use.
type Backend struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

var (
	_ lock.Backend = (*Backend)(nil)
	_ lock.Waiter  = (*Backend)(nil)
)

// An Option configures a Backend.
type Option func(*config)

type config struct{ shards int }

// WithShards sets the number of shards: n rounded up to a power of two,
// between 1 and MaxShards. More shards let more goroutines lock distinct keys
// at once. Default: DefaultShards.
func WithShards(n int) Option {
	return func(c *config) { c.shards = n }
}

// New returns a Backend. Pass it to lock.New, which closes it.
func New(opts ...Option) *Backend {
	c := config{shards: DefaultShards}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	n := 1
	for n < min(c.shards, MaxShards) {
		n *= 2
	}
	b := &Backend{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range b.shards {
		b.shards[i].entries = make(map[string]*entry)
	}
	return b
}

// Shards returns the number of shards.
func (b *Backend) Shards() int { return len(b.shards) }

// shard is a part of the key space with its own mutex.
type shard struct {
	mu      sync.Mutex
	entries map[string]*entry // held keys, and free keys with waiters
	spare   []*entry          // unused entries, for reuse
	token   uint64            // the last fencing token granted here
	peak    int               // most entries since the map was made
	idle    [maxIdle]idleSlot // the keys freed last, still in the map
	idleSeq uint64            // numbers the keys made idle
	nIdle   int               // entries in the map that are idle
	closed  bool
	_       [64]byte // keeps neighbouring shards off one cache line
}

// idleSlot remembers a free key kept in its shard's map.
type idleSlot struct {
	key string
	e   *entry
	seq uint64 // e.idle when the key was made idle; stale if they differ
}

// entry is the state of one key.
type entry struct {
	shard   *shard    // the shard of the key; entries are reused only there
	token   uint64    // the holder's fencing token; 0 when free
	idle    uint64    // the idleSeq that made this free key idle; 0 if not idle
	expires time.Time // when the holder's key expires; zero: not before Release
	waiters []*waiter // waiting Acquire calls, oldest first
	woken   bool      // a waiter was woken to try and has not tried yet
}

// waiter is one Wait call queued on a key.
type waiter struct {
	req    lock.Request
	ready  chan struct{} // receives once per hand-off, wake-up or Close
	woken  bool          // woken to try again
	handed bool          // res holds a grant made by a release
	closed bool          // the backend was closed
	res    lock.Result
}

func (b *Backend) shard(key string) *shard {
	return &b.shards[maphash.String(b.seed, key)&b.mask]
}

// Acquire makes one attempt to take req.Key.
func (b *Backend) Acquire(_ context.Context, req lock.Request) (lock.Result, error) {
	s := b.shard(req.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return lock.Result{}, lock.ErrClosed
	}
	var res lock.Result
	s.tryLocked(&req, &res)
	return res, nil
}

// Wait waits for req.Key up to d, queued behind older Acquire calls.
func (b *Backend) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	s := b.shard(req.Key)
	w := &waiter{req: req, ready: make(chan struct{}, 1)}
	end := time.Now().Add(d)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.closed || w.closed {
			s.mu.Unlock()
			return lock.Result{}, lock.ErrClosed
		}
		if w.woken {
			w.woken = false
			if e := s.entries[req.Key]; e != nil {
				e.woken = false
			}
		}
		var res lock.Result
		s.tryLocked(&req, &res)
		if res.Acquired {
			s.mu.Unlock()
			return res, nil
		}
		now := time.Now()
		e := s.entries[req.Key] // present: the key is held
		e.enqueue(w)
		wake := end.Sub(now)
		if !e.expires.IsZero() {
			wake = min(wake, e.expires.Sub(now))
		}
		s.mu.Unlock()

		if timer == nil {
			timer = time.NewTimer(wake)
		} else {
			timer.Reset(wake)
		}
		var done bool
		select {
		case <-w.ready:
		case <-timer.C:
			done = !time.Now().Before(end)
		case <-ctx.Done():
			done = true
		}
		s.mu.Lock()
		if w.handed {
			// A release handed the key over, perhaps as ctx ended: the
			// caller gives it back in that case.
			s.mu.Unlock()
			return w.res, nil
		}
		if done {
			s.leaveLocked(req.Key, w)
			s.mu.Unlock()
			return res, nil
		}
		// Woken, or the holder's key expired: try again, queued afresh.
		if e := s.entries[req.Key]; e != nil {
			e.remove(w)
		}
		s.mu.Unlock()
	}
}

// Extend sets the TTL of a key held by req.Token.
func (b *Backend) Extend(_ context.Context, req lock.Request) (lock.Result, error) {
	s, e := b.lockHeld(req)
	defer s.mu.Unlock()
	if s.closed {
		return lock.Result{}, lock.ErrClosed
	}
	if e == nil {
		return lock.Result{}, notHeld(req.Key)
	}
	if e.expires.IsZero() {
		return lock.Result{Acquired: true, Token: e.token, Pinned: true}, nil
	}
	now := time.Now()
	if !now.Before(e.expires) {
		// Expired, if not yet taken: extending it would resurrect it.
		s.releaseLocked(req.Key, e, now)
		return lock.Result{}, notHeld(req.Key)
	}
	e.expires = now.Add(req.TTL)
	return lock.Result{Acquired: true, Token: e.token}, nil
}

// Release frees a key held by req.Token.
func (b *Backend) Release(_ context.Context, req lock.Request) error {
	s, e := b.lockHeld(req)
	defer s.mu.Unlock()
	if s.closed {
		return lock.ErrClosed
	}
	if e == nil {
		return notHeld(req.Key)
	}
	s.releaseLocked(req.Key, e, time.Time{})
	return nil
}

// lockHeld locks the shard of req.Key and returns it with the key's entry
// if req.Token holds the key, or with nil. The Handle of a grant is its
// entry, which saves hashing the key and looking it up; the token tells
// whether the entry still belongs to the grant, since tokens are never
// reused within a shard and entries never leave theirs.
func (b *Backend) lockHeld(req lock.Request) (*shard, *entry) {
	if e, ok := req.Handle.(*entry); ok && e.shard != nil {
		e.shard.mu.Lock()
		if e.token != req.Token {
			return e.shard, nil
		}
		return e.shard, e
	}
	s := b.shard(req.Key)
	s.mu.Lock()
	if e := s.entries[req.Key]; e != nil && e.token == req.Token {
		return s, e
	}
	return s, nil
}

// Close drops every key and wakes every waiter with lock.ErrClosed.
func (b *Backend) Close() error {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		s.closed = true
		for _, e := range s.entries {
			for _, w := range e.waiters {
				w.closed = true
				w.signal()
			}
		}
		s.entries = nil
		s.spare = nil
		s.idle = [maxIdle]idleSlot{}
		s.nIdle = 0
		s.mu.Unlock()
	}
	return nil
}

// Len returns the number of keys the backend holds state for: held keys and
// keys with waiters. It is zero once every lease has ended.
func (b *Backend) Len() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.entries) - s.nIdle
		s.mu.Unlock()
	}
	return n
}

// tryLocked takes req.Key if it is free, or reports its holder's TTL, in
// res. Request and Result go by pointer here: they are large to copy.
func (s *shard) tryLocked(req *lock.Request, res *lock.Result) {
	e := s.entries[req.Key]
	if e == nil {
		e = s.newEntry()
		s.entries[req.Key] = e
		if len(s.entries) > s.peak {
			s.peak = len(s.entries)
		}
		s.grantLocked(e, req, res)
		return
	}
	var now time.Time
	if e.token != 0 && !e.expires.IsZero() {
		now = time.Now()
		if !now.Before(e.expires) {
			// The holder's key has expired: free it, as a release would.
			s.releaseLocked(req.Key, e, now)
		}
	}
	if e.token != 0 {
		if !e.expires.IsZero() {
			res.HolderTTL = e.expires.Sub(now)
		}
		return
	}
	// The key is free while waiters are queued: one of them was woken to
	// compete for it. A caller may take it ahead of them, unless the oldest
	// has waited long enough to starve and began before the caller.
	if len(e.waiters) > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		w := e.waiters[0]
		older := req.Since.IsZero() || w.req.Since.Before(req.Since) // zero: a first attempt
		if older && now.Sub(w.req.Since) >= starveAfter {
			s.handLocked(e, e.popHead())
			return
		}
	}
	s.grantLocked(e, req, res)
}

// grantLocked gives e to req with a new fencing token, described in res.
func (s *shard) grantLocked(e *entry, req *lock.Request, res *lock.Result) {
	if e.idle != 0 {
		e.idle = 0
		s.nIdle--
	}
	s.token++
	e.token = s.token
	e.expires = time.Time{}
	if req.Renew {
		// A lease that renews itself in this process cannot fail to renew:
		// keep the key until Release, with no expiry to check.
		*res = lock.Result{Acquired: true, Token: e.token, Pinned: true, Handle: e}
		return
	}
	now := time.Now()
	e.expires = now.Add(req.TTL)
	*res = lock.Result{Acquired: true, Token: e.token, Start: now, Handle: e}
}

// releaseLocked frees e, the entry of key. The oldest waiter is handed the
// key if it has waited long enough to starve, and woken to compete for it
// otherwise. now is the current time if the caller knows it.
func (s *shard) releaseLocked(key string, e *entry, now time.Time) {
	e.token = 0
	e.expires = time.Time{}
	if len(e.waiters) == 0 {
		s.dropLocked(key, e)
		return
	}
	if e.woken {
		return // a woken waiter will try; one at a time
	}
	if now.IsZero() {
		now = time.Now()
	}
	w := e.popHead()
	if now.Sub(w.req.Since) >= starveAfter {
		s.handLocked(e, w)
		return
	}
	e.woken, w.woken = true, true
	w.signal()
}

// handLocked gives the free key of e to the waiter w, taken off the queue.
func (s *shard) handLocked(e *entry, w *waiter) {
	s.grantLocked(e, &w.req, &w.res)
	w.handed = true
	w.signal()
}

// leaveLocked takes w off the queue of key. If w was woken and leaves
// without trying, the next waiter is woken in its place.
func (s *shard) leaveLocked(key string, w *waiter) {
	e := s.entries[key]
	if e == nil {
		return
	}
	e.remove(w)
	if w.woken {
		w.woken = false
		e.woken = false
	}
	if e.token == 0 {
		if len(e.waiters) == 0 {
			s.dropLocked(key, e)
		} else if !e.woken {
			next := e.popHead()
			e.woken, next.woken = true, true
			next.signal()
		}
	}
}

// signal wakes the Wait call of w; a wake-up it has not seen yet suffices.
func (w *waiter) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// popHead takes the oldest waiter off the queue.
func (e *entry) popHead() *waiter {
	w := e.waiters[0]
	n := copy(e.waiters, e.waiters[1:])
	e.waiters[n] = nil // the array must not keep w alive
	e.waiters = e.waiters[:n]
	return w
}

// remove takes w off the queue, if it is there.
func (e *entry) remove(w *waiter) {
	for i, q := range e.waiters {
		if q == w {
			n := copy(e.waiters[i:], e.waiters[i+1:])
			e.waiters[i+n] = nil
			e.waiters = e.waiters[:i+n]
			return
		}
	}
}

// enqueue adds w to e's waiters, behind every Acquire call that began
// before its own. The queue is kept in that order, so that a waiter that
// timed out and came back keeps its place.
func (e *entry) enqueue(w *waiter) {
	i := len(e.waiters)
	for i > 0 && w.req.Since.Before(e.waiters[i-1].req.Since) {
		i--
	}
	e.waiters = append(e.waiters, nil)
	copy(e.waiters[i+1:], e.waiters[i:])
	e.waiters[i] = w
}

func (s *shard) newEntry() *entry {
	if n := len(s.spare); n > 0 {
		e := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return e
	}
	return &entry{shard: s}
}

// dropLocked is called when key, whose entry e is free, has no waiters
// left. The key stays in the map as one of the shard's idle keys; the oldest
// idle key, if there are too many, is forgotten.
func (s *shard) dropLocked(key string, e *entry) {
	s.idleSeq++
	slot := &s.idle[s.idleSeq%maxIdle]
	if old := slot.e; old != nil && old.idle == slot.seq {
		s.forgetLocked(slot.key, old)
	}
	e.idle = s.idleSeq
	*slot = idleSlot{key: key, e: e, seq: s.idleSeq}
	s.nIdle++

	// A Go map keeps its size after deletes: make a new one once a burst
	// of keys is over, so that memory follows the keys in use.
	if len(s.entries) == s.nIdle && s.peak > 1024 {
		for i := range s.idle {
			if slot := &s.idle[i]; slot.e != nil && slot.e.idle == slot.seq {
				s.forgetLocked(slot.key, slot.e)
			}
		}
		s.idle = [maxIdle]idleSlot{}
		s.entries = make(map[string]*entry)
		s.peak = 0
	}
}

// forgetLocked deletes the idle key and keeps its entry for reuse.
func (s *shard) forgetLocked(key string, e *entry) {
	delete(s.entries, key)
	s.nIdle--
	if len(s.spare) < maxSpare {
		*e = entry{shard: s, waiters: e.waiters[:0]}
		s.spare = append(s.spare, e)
	}
}

func notHeld(key string) error {
	return fmt.Errorf("%w: key %q", lock.ErrNotHeld, key)
}
