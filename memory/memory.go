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
		b.shards[i].entries = make(map[uint64]*entry)
	}
	return b
}

// Shards returns the number of shards.
func (b *Backend) Shards() int { return len(b.shards) }

// locate returns the hash of key and its shard. The hash also finds the key
// in the shard's table, so a key is hashed once per call.
func (b *Backend) locate(key string) (uint64, *shard) {
	h := maphash.String(b.seed, key)
	return h, &b.shards[h&b.mask]
}

// Acquire makes one attempt to take req.Key.
func (b *Backend) Acquire(_ context.Context, req lock.Request) (lock.Result, error) {
	h, s := b.locate(req.Key)
	var res lock.Result
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return res, lock.ErrClosed
	}
	s.tryLocked(h, &req, &res)
	s.mu.Unlock()
	return res, nil
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
		s.releaseLocked(e, now)
		return lock.Result{}, notHeld(req.Key)
	}
	e.expires = now.Add(req.TTL)
	return lock.Result{Acquired: true, Token: e.token}, nil
}

// Release frees a key held by req.Token.
func (b *Backend) Release(_ context.Context, req lock.Request) error {
	s, e := b.lockHeld(req)
	if s.closed {
		s.mu.Unlock()
		return lock.ErrClosed
	}
	if e == nil {
		s.mu.Unlock()
		return notHeld(req.Key)
	}
	s.releaseLocked(e, time.Time{})
	s.mu.Unlock()
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
	h, s := b.locate(req.Key)
	s.mu.Lock()
	if e := s.lookup(h, req.Key); e != nil && e.token == req.Token {
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
			for ; e != nil; e = e.next {
				for _, w := range e.waiters {
					w.closed = true
					w.signal()
				}
			}
		}
		s.entries = nil
		s.spare = nil
		s.idle = [maxIdle]idleSlot{}
		s.count, s.nIdle = 0, 0
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
		n += s.count - s.nIdle
		s.mu.Unlock()
	}
	return n
}

func notHeld(key string) error {
	return fmt.Errorf("%w: key %q", lock.ErrNotHeld, key)
}
